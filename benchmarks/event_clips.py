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

  .venv/bin/python benchmarks/event_clips.py [--cameras 2] [--size 1920x1080] [--seconds 30] [--repeat 3] [--parts]

--parts first prints the in-process cost per packet of the tap, the link's pickling and the
ring with the clip writer (the socket and the process switch are in the whole-run figure only).
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


def cpu_s(procs: dict) -> dict[str, float]:
    """User + system seconds of the decoders and of the sink so far."""
    total = {"decode": 0.0, "sink": 0.0}
    for title, p in procs.items():
        role = title.split("[", 1)[0]
        if role in total:
            t = p.cpu_times()
            total[role] += t.user + t.system
    return total


def one_run(urls: list[str], out: Path, clips: bool, seconds: float, warmup: float) -> dict[str, float]:
    """Decoder and sink CPU seconds per camera-second over [warmup, seconds - 4] of one CLI run."""
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
    return {k: (c1[k] - c0[k]) / ((t1 - t0) * len(urls)) for k in c0}


def parts_us(clip: Path, rounds: int) -> dict[str, float]:
    """Per packet of ``clip``, in one process, medians of ``rounds``: the decoder's tap (copy of the
    bytes), the trip through the link (pickle + unpickle of the batches, one per frame), and the
    sink's ring plus the clip writer (always recording)."""
    import pickle

    import av

    from videoclf.stages.decode.packettap import PacketTap
    from videoclf.stages.outputs.clips import ClipRecorder

    ts = clip.with_suffix(".ts")  # the clip as a camera's RTSP demuxer gives it: H.264 Annex B
    if not ts.exists():
        with av.open(str(clip)) as src, av.open(str(ts), "w") as dst:  # the muxer converts (h264_mp4toannexb)
            out = dst.add_stream_from_template(src.streams.video[0])
            for p in src.demux(video=0):
                if p.size:
                    p.stream = out
                    dst.mux(p)
    c = av.open(str(ts))  # open while the rounds run: a closed container's stream has no time base
    raw = [p for p in c.demux(video=0) if p.size]
    stream = c.streams.video[0]
    tap, batches = PacketTap(), []
    for _ in tap.wrap(iter(raw), stream):
        batches += tap.take(0, offset=0.0)
    times: dict[str, list[float]] = {"tap": [], "link": [], "ring + clip": []}
    for _ in range(rounds):
        t0 = time.process_time()
        tap = PacketTap()
        for _ in tap.wrap(iter(raw), stream):
            tap.take(0, offset=0.0)
        t1 = time.process_time()
        wire = [pickle.loads(pickle.dumps(b, pickle.HIGHEST_PROTOCOL)) for b in batches]
        t2 = time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            rec = ClipRecorder(tmp, ["cam"], pre_s=5.0)
            rec.packets(wire[0])
            rec.clip(0, 0.0, 5.0, 3600.0, "bench")
            for b in wire[1:]:
                rec.packets(b)
            rec.close()
        t3 = time.process_time()
        for k, a, b in (("tap", t0, t1), ("link", t1, t2), ("ring + clip", t2, t3)):
            times[k].append((b - a) * 1e6 / len(raw))
    c.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--size", default="1920x1080", help="WxH of the cameras")
    ap.add_argument("--seconds", type=float, default=30, help="length of each run")
    ap.add_argument("--warmup", type=float, default=5, help="seconds of each run not measured, after the first label")
    ap.add_argument("--repeat", type=int, default=3, help="alternated rounds; medians are quoted")
    ap.add_argument("--parts", action="store_true", help="also the in-process cost per packet of each part")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(describe_cpu(cpu_info()))
    clip = make_clip(RESULTS / f"clip_{width}x{height}_30fps.mp4", seconds=10, size=(width, height))
    if args.parts:
        parts = parts_us(clip, max(args.repeat, 3))
        print(f"per packet of {clip.name}, one process, medians: " + ", ".join(f"{k} {v:.1f} µs" for k, v in parts.items())
              + f"; at 30 packets/s: {sum(parts.values()) * 30 / 1e4:.3f} % of one core")
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
    print(f"{args.cameras} x {width}x{height}@30 cameras, {args.seconds:g} s runs, {args.repeat} alternated rounds "
          f"(medians), CPU per camera-second as % of one core:")
    for role in ("decode", "sink"):
        b, c = (statistics.median(r[role] for r in runs) for runs in (base, with_clips))
        print(f"  {role:6s} baseline (alerts, no clips) {b * 100:6.2f} %, clips (always recording) {c * 100:6.2f} % "
              f"(ratio {c / max(b, 1e-9):.3f})")
    b, c = (statistics.median(r["decode"] + r["sink"] for r in runs) for runs in (base, with_clips))
    extra = (c - b) * 100
    print(f"  decode + sink: baseline {b * 100:.2f} %, clips {c * 100:.2f} % (ratio {c / b:.3f}); extra for clips "
          f"{extra:.2f} % of one core per camera (target <= 2 %): {'OK' if extra <= 2 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
