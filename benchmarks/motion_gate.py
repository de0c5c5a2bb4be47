"""The motion gate's cost on a 1080p frame, run by hand (not a test): ``luma_cells`` (the
mean luma of each 16x16 cell, read from the decoded frame's own luma plane) against the crop
and resize every classified frame pays (``to_model_rgb``, the baseline), on the same decoded
frames, alternated, medians of --repeat rounds.

  .venv/bin/python benchmarks/motion_gate.py [--repeat 9] [--size 1920x1080]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "bigbuckbunny_360p.mp4"


def frames_at(width: int, height: int, n: int = 30) -> list:
    """``n`` frames of the sample scaled to ``width`` x ``height``, YUV 4:2:0 as a decoder gives them."""
    import av

    with av.open(str(SAMPLE)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f.reformat(width=width, height=height, format="yuv420p"))
            if len(out) == n:
                return out
    return out


def per_frame_ms(fn, frames: list) -> float:
    t0 = time.perf_counter()
    for f in frames:
        fn(f)
    return (time.perf_counter() - t0) * 1000 / len(frames)


def main() -> int:
    from handwritten import cpu_info, describe_cpu
    from videoclf.stages.decode.file import DecodeConfig, to_model_rgb
    from videoclf.stages.decode.select import luma_cells

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=9, help="alternated rounds; medians are quoted")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--crop", type=int, default=224, help="the model input the baseline crops and resizes to")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(describe_cpu(cpu_info()))
    frames = frames_at(width, height)
    geometry = DecodeConfig("bench", str(SAMPLE), round(args.crop * 256 / 224), args.crop)
    cells, base = [], []
    for _ in range(args.repeat):
        cells.append(per_frame_ms(luma_cells, frames))
        base.append(per_frame_ms(lambda f: to_model_rgb(f, geometry), frames))
    c, b = statistics.median(cells), statistics.median(base)
    grid = luma_cells(frames[0]).shape
    print(f"{width}x{height} YUV 4:2:0, {len(frames)} frames x {args.repeat} alternated rounds (medians):")
    print(f"  luma_cells ({grid[0]}x{grid[1]} cells): {c:.3f} ms per frame")
    print(f"  crop + resize to {args.crop} (to_model_rgb, baseline): {b:.3f} ms per frame")
    print(f"  ratio luma_cells / baseline: {c / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
