"""Cost of the watched outputs, each against a baseline measured in the same run.

    PYTHONPATH=. python benchmarks/annotated_video.py [--frames 300] [--size 1920x1080] [--weights none]

1. encode only: the annotated-video encoder alone (overlay + libx264) on the clip's frames;
2. pipeline, outputs off (null label sink) → pipeline FPS;
3. pipeline with output.video → FPS; target: ≥ min(encode-only, outputs-off) — enabling the
   video costs no more than the encode itself;
4. pipeline with --web and --metrics (scraped twice a second) → FPS; target: ≥ 98 % of (2).
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.config import parse_config
from pipeline.supervisor import RunOptions, run_pipeline
from stages.overlay import draw_overlay, overlay_lines
from stages.video_out import SegmentWriter


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
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = tmp / "clip.mp4"
        make_clip(src, w, h, a.frames)
        enc = encode_only(src, tmp)
        off = pipeline_fps(src, tmp / "off", a.weights)
        vid = pipeline_fps(src, tmp / "video", a.weights, video=True)
        web = pipeline_fps(src, tmp / "web", a.weights, web="18731", metrics="18732")
    print(f"{a.size} x {a.frames} frames, weights={a.weights}")
    print(f"encode only (overlay + libx264 {SegmentWriter.__module__}): {enc:7.1f} fps")
    print(f"pipeline, outputs off:             {off:7.1f} fps")
    print(f"pipeline, output.video on:         {vid:7.1f} fps  ratio vs min(encode, off): {vid / min(enc, off):.3f} (target ≥ 1)")
    print(f"pipeline, web + metrics on:        {web:7.1f} fps  ratio vs off: {web / off:.3f} (target ≥ 0.98)")


if __name__ == "__main__":
    main()
