"""Three zones of one 1080p camera against three cameras of the same picture, each with one of
the zones as its roi: the whole CPU of a real run (the supervisor and every stage process)
per frame of the clip, side by side in one run.

Zones share one decode (one decoder, one slot per frame holding the three inputs); three
cameras decode the same frames three times. Both classify three inputs a frame, so the
difference is what the shared decode saves. Target: three zones cost less than three cameras.

Each measurement runs ``videoclf run`` (null sink: no label log written) twice, on the first
``--short`` and the first ``--long`` frames, and takes the difference, so that the start (the
model's load and warm-up, the processes' start) cancels out: CPU seconds per frame =
(CPU(long) - CPU(short)) / (long - short). Zones and cameras alternate (ABBA), the figures are
medians over the rounds, the ratio is cameras / zones from the same run.

Usage:
    python benchmarks/zones.py [--clip CLIP] [--short 60] [--long 300] [--rounds 4]
        [--backbone efficientnet_lite0] [--weights imagenet]
The clip defaults to benchmarks/results/clip_1080p30_gop30.mp4 (naive_vs_pipeline's make_clip).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

from handwritten import cpu_info, describe_cpu  # noqa: E402 (beside this file: run as a script)
from naive_vs_pipeline import RESULTS, make_clip, save_results  # noqa: E402

# three zones of a 1080p frame: a door (tall), a yard (wide), a gate (square)
ZONES = [{"name": "door", "x": 80, "y": 200, "w": 360, "h": 720},
         {"name": "yard", "x": 560, "y": 420, "w": 960, "h": 540},
         {"name": "gate", "x": 1440, "y": 120, "w": 400, "h": 400}]


def configs(clip: str, model: dict[str, Any], out: str) -> dict[str, dict[str, Any]]:
    roi = lambda z: {k: v for k, v in z.items() if k != "name"}  # noqa: E731
    common = {"model": model, "output": {"dir": out}}
    return {"zones": {"streams": [{"name": "cam", "source": clip, "zones": ZONES}], **common},
            "cameras": {"streams": [{"name": f"cam_{z['name']}", "source": clip, "roi": roi(z)} for z in ZONES],
                        **common}}


def run_cpu(cfg: dict[str, Any], frames: int, work: Path) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one ``videoclf run`` of ``cfg`` on
    ``frames`` frames a stream, every process of it included (each stage process is reaped by
    the run's main one, which is reaped here: RUSAGE_CHILDREN holds them all)."""
    path = work / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    res = subprocess.run([sys.executable, "-m", "videoclf.cli.main", "run", str(path), "-q", "--null-sink",
                          "--overwrite", "--max-frames", str(frames)], capture_output=True, text=True, cwd=ROOT)
    wall, after = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"videoclf run failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def run(clip: str, short: int, long: int, rounds: int, model: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="videoclf-zones-") as tmp:
        work = Path(tmp)
        cfgs = configs(clip, model, str(work / "out"))
        run_cpu(cfgs["zones"], short, work)  # warm the page cache and the export cache
        per_frame: dict[str, list[float]] = {k: [] for k in cfgs}
        fps: dict[str, list[float]] = {k: [] for k in cfgs}
        for r in range(rounds):
            for kind in (("zones", "cameras") if r % 2 == 0 else ("cameras", "zones")):
                (ca, wa), (cb, wb) = run_cpu(cfgs[kind], short, work), run_cpu(cfgs[kind], long, work)
                per_frame[kind].append((cb - ca) / (long - short))
                fps[kind].append((long - short) / (wb - wa) if wb > wa else float("nan"))
    zones, cams = (statistics.median(per_frame[k]) for k in ("zones", "cameras"))
    zfps, cfps = (statistics.median(fps[k]) for k in ("zones", "cameras"))
    # an engine's idle threads may spin, so CPU follows wall time on a busy run: the sustained
    # FPS (both runs hold every core) is the other view of the same saving
    return {"clip": clip, "short": short, "long": long, "rounds": rounds, "model": model,
            "cpu": describe_cpu(cpu_info()), "zones_ms_per_frame": round(1000 * zones, 2),
            "cameras_ms_per_frame": round(1000 * cams, 2), "samples_ms": {k: [round(1000 * v, 2) for v in vs]
                                                                           for k, vs in per_frame.items()},
            "zones_fps": round(zfps, 2), "cameras_fps": round(cfps, 2),
            "samples_fps": {k: [round(v, 2) for v in vs] for k, vs in fps.items()},
            "cameras_over_zones": round(cams / zones, 2) if zones > 0 else None,
            "zones_fps_over_cameras": round(zfps / cfps, 2) if cfps > 0 else None, "target_met": cams > zones}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=None, help="a 1080p file (default: the 1080p clip)")
    ap.add_argument("--short", type=int, default=60, help="frames of the short run (start costs cancel out)")
    ap.add_argument("--long", type=int, default=300, help="frames of the long run")
    ap.add_argument("--rounds", type=int, default=4, help="alternated rounds (each measures both)")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--weights", default="imagenet", help="imagenet, or none (random: no download, same cost)")
    args = ap.parse_args()
    if args.long <= args.short:
        ap.error("--long must be above --short")
    clip = args.clip or str(make_clip(RESULTS / "clip_1080p30_gop30.mp4"))
    model = {"backbone": args.backbone, "weights": args.weights, "device": "cpu"}
    res = run(clip, args.short, args.long, args.rounds, model)
    print(res["cpu"])
    print(f"{clip}: 3 zones of one camera vs 3 cameras (one roi each), frames {args.short}..{args.long}, "
          f"{args.backbone}, medians of {args.rounds} alternated rounds, every process's CPU")
    print(f"  3 zones:   {res['zones_ms_per_frame']:8.2f} ms CPU per frame, {res['zones_fps']:7.2f} frames/s")
    print(f"  3 cameras: {res['cameras_ms_per_frame']:8.2f} ms CPU per frame, {res['cameras_fps']:7.2f} frames/s")
    print(f"  cameras / zones CPU: {res['cameras_over_zones']}x; zones / cameras FPS: {res['zones_fps_over_cameras']}x")
    print(f"target (3 zones cost less than 3 cameras): {'met' if res['target_met'] else 'NOT met'}")
    out = save_results("zones", res)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
