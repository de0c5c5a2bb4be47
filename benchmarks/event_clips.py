"""What recording event clips costs per camera, run by hand (not a test).

N cameras (`videoclf serve`, loopback) serve the shipped sample scaled to --size at 30 FPS,
GOP 1 s. Two runs of the real CLI alternate, --repeat rounds each, on the same cameras:

  - baseline: an alert rule that holds on every frame, no clip;
  - clips:    the same rule with `clip: {pre_s: 5, post_s: 300}`: its event opens on the first
              frame, so a clip records for the whole run (the worst case: always recording),
              and the decoder sends every packet to the sink.

Measured: the CPU time (user + system, psutil) of the decoder and sink processes over the
same window of each run (after --warmup s), per camera-second. Printed: medians of the
rounds, the ratio clips / baseline, and the extra CPU as % of one core per camera (target:
<= 2 %). The classifier is left out (it does the same work in both); the model is a small
random-weights one, so the CPU is not spent there.

  .venv/bin/python benchmarks/event_clips.py [--cameras 2] [--size 1920x1080] [--seconds 30] [--repeat 3]
  .venv/bin/python benchmarks/event_clips.py --cameras 1 --size 640x360 --seconds 8 --warmup 3 --repeat 1  # smoke
"""
from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

from handwritten import cpu_info, describe_cpu  # noqa: E402
from naive_vs_pipeline import RESULTS, make_clip  # noqa: E402
from videoclf.devtools.testing import Camera, stage_processes  # noqa: E402
from videoclf.stages.classify.backbones import imagenet_labels  # noqa: E402

MODEL = {"backbone": "efficientnet_lite0", "weights": "none", "input_size": 64, "max_batch": 4, "device": "cpu",
         "threads": 1}


def config(urls: list[str], out: Path, clips: bool) -> dict:
    rule = {"when": imagenet_labels(), "min_score": 0.0, "for_frames": 1, "cooldown_s": 0,
            **({"clip": {"pre_s": 5, "post_s": 300}} if clips else {})}
    return {"streams": [{"name": f"cam{i}", "source": u} for i, u in enumerate(urls)], "model": MODEL,
            "output": {"dir": str(out), "alerts": [rule]}}


def cpu_s(procs: dict) -> float:
    """User + system seconds of the decoders and the sink so far."""
    total = 0.0
    for title, p in procs.items():
        if title.startswith(("decode[", "sink[")):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def one_run(urls: list[str], out: Path, clips: bool, seconds: float, warmup: float) -> float:
    """Decoder + sink CPU seconds per camera-second over [warmup, seconds - 1] of one CLI run."""
    cfg = out.with_suffix(".yaml")
    cfg.write_text(yaml.safe_dump(config(urls, out, clips)))
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "--duration", str(seconds),
                             "-q"], cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "cam0.jsonl").exists():  # the model loaded and frames flow
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"run failed: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        time.sleep(warmup)
        procs = stage_processes(proc.pid)
        c0, t0 = cpu_s(procs), time.monotonic()
        time.sleep(max(seconds - warmup - 4, 1.0))
        c1, t1 = cpu_s(procs), time.monotonic()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    if clips and not list((out / "clips").glob("*.ts")):
        raise SystemExit("the clips run wrote no clip")
    return (c1 - c0) / ((t1 - t0) * len(urls))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--size", default="1920x1080", help="WxH of the cameras")
    ap.add_argument("--seconds", type=float, default=30, help="length of each run")
    ap.add_argument("--warmup", type=float, default=5, help="seconds of each run not measured, after the first label")
    ap.add_argument("--repeat", type=int, default=3, help="alternated rounds; medians are quoted")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(describe_cpu(cpu_info()))
    clip = make_clip(RESULTS / f"clip_{width}x{height}_30fps.mp4", seconds=10, size=(width, height))
    cams = [Camera(clip).start() for _ in range(args.cameras)]
    base, with_clips = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeat):
                urls = [c.url() for c in cams]
                base.append(one_run(urls, Path(tmp) / f"base{r}", False, args.seconds, args.warmup))
                with_clips.append(one_run(urls, Path(tmp) / f"clips{r}", True, args.seconds, args.warmup))
    finally:
        for c in cams:
            c.kill()
    b, c = statistics.median(base), statistics.median(with_clips)
    print(f"{args.cameras} x {width}x{height}@30 cameras, {args.seconds:g} s runs, {args.repeat} alternated rounds "
          f"(medians), decoder + sink CPU per camera-second:")
    print(f"  baseline (alerts, no clips): {b * 100:.2f} % of one core")
    print(f"  clips (always recording):    {c * 100:.2f} % of one core  (ratio {c / b:.3f} against the baseline)")
    extra = (c - b) * 100
    print(f"  extra for clips: {extra:.2f} % of one core per camera (target <= 2 %): {'OK' if extra <= 2 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
