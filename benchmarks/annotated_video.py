"""Cost of the watched outputs, each against a baseline measured in the same run.

    python benchmarks/annotated_video.py [--frames 300] [--size 1920x1080] [--weights none]

1. encode only: the annotated-video encoder alone (overlay + libx264) on the clip's frames;
2. pipeline, outputs off (null label sink) → pipeline FPS;
3. pipeline with output.video → FPS; target: the time it adds per frame is no more than the
   encode-only time per frame (on 2 shared cores the encoder cannot run beside the pipeline
   at its solo speed, so the cost is compared per frame, not as FPS);
4. pipeline with --web and --metrics (scraped twice a second) → FPS; target: ≥ 98 % of (2).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from videoclf.config.load import parse_config
from videoclf.supervision.supervisor import RunOptions, run_pipeline
from videoclf.stages.outputs.overlay import draw_overlay, overlay_lines
from videoclf.stages.outputs.video_out import SegmentWriter


def make_clip(path: Path, w: int, h: int, n: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (h, w, 3), np.uint8)
        for i in range(n):
            img = np.roll(base, i * 8, axis=1)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 30)
            c.mux(s.encode(f))
        c.mux(s.encode())


def encode_only(src: Path, out: Path) -> float:
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    h = frames[0].shape[0] * 2 // 3
    w = SegmentWriter(str(out), "enc", (frames[0].shape[1], h), 30.0, None)
    t0 = time.perf_counter()
    for i, y in enumerate(frames):
        draw_overlay(y, h, overlay_lines("enc", i / 30, 30.0, [("albatross", 0.5)] * 3))
        w.write(y, i / 30)
    w.close()
    return len(frames) / (time.perf_counter() - t0)


def pipeline_fps(src: Path, out: Path, weights: str, **output: object) -> float:
    cfg = parse_config({"streams": [{"name": "bench", "source": str(src)}], "model": {"weights": weights},
                        "output": {"dir": str(out), **output}})
    stop = threading.Event()
    if output.get("metrics"):  # a scraper, as Prometheus would (but 30x more often)
        def scrape() -> None:
            while not stop.wait(0.5):
                for url in (f"http://127.0.0.1:{output['metrics']}/metrics", f"http://127.0.0.1:{output['web']}/api/state"):
                    try:
                        urllib.request.urlopen(url, timeout=2).read()
                    except OSError:
                        pass
        threading.Thread(target=scrape, daemon=True).start()
    res = run_pipeline(cfg, RunOptions(sink="null", progress=False))
    stop.set()
    return res.report["streams"]["bench"]["sustained_fps"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--weights", default="none", help="'none' (random init: labels meaningless) or 'imagenet'")
    ap.add_argument("--repeat", type=int, default=3, help="alternate the pipeline runs; medians are quoted")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = tmp / "clip.mp4"
        make_clip(src, w, h, a.frames)
        enc = encode_only(src, tmp)
        runs: dict[str, list[float]] = {"off": [], "video": [], "web": []}
        for i in range(a.repeat):  # alternated, so drifting machine load hits every variant alike
            runs["off"].append(pipeline_fps(src, tmp / f"off{i}", a.weights))
            runs["video"].append(pipeline_fps(src, tmp / f"video{i}", a.weights, video=True))
            runs["web"].append(pipeline_fps(src, tmp / f"web{i}", a.weights, web="18731", metrics="18732"))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f} fps" for k, v in runs.items()), flush=True)
    off, vid, web = (statistics.median(runs[k]) for k in ("off", "video", "web"))
    added = 1000 / vid - 1000 / off  # what the video adds per frame, against the encode's own cost
    print(f"{a.size} x {a.frames} frames, weights={a.weights}, medians of {a.repeat}")
    print(f"encode only (overlay + libx264 {SegmentWriter.__module__}): {enc:7.1f} fps ({1000 / enc:.1f} ms/frame)")
    print(f"pipeline, outputs off:             {off:7.1f} fps")
    print(f"pipeline, output.video on:         {vid:7.1f} fps  adds {added:.1f} ms/frame = "
          f"{added / (1000 / enc):.2f}x the encode-only time (target ≤ 1)")
    print(f"pipeline, web + metrics on:        {web:7.1f} fps  ratio vs off: {web / off:.3f} (target ≥ 0.98)")


if __name__ == "__main__":
    main()
