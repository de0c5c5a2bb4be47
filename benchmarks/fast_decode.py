"""Decode CPU per frame of a 1080p H.264 clip on one thread: the normal decode, the fast decode
(``decode.fast``: no loop filter) and keyframes only (``classify.keyframes``), each through
videoclf's own file decoder (decode + the model input, 224 px).

The modes run in alternated ABBA-style rounds (normal, fast, keyframes, then the reverse), the
figures are medians over the rounds, and the ratios are against the normal decode measured in
the same run. Keyframes only is given per frame of the clip (what a camera-second of it costs)
and per keyframe decoded.

Usage:
    python benchmarks/fast_decode.py [--clip CLIP] [--frames 300] [--rounds 4]
The clip defaults to benchmarks/results/clip_1080p30_gop30.mp4 (made by naive_vs_pipeline's
make_clip when missing: the sample upscaled to 1080p, a keyframe a second, no B-frames).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from handwritten import cpu_info, describe_cpu  # noqa: E402 (beside this file: run as a script)
from naive_vs_pipeline import RESULTS, make_clip, save_results  # noqa: E402

MODES = ("normal", "fast", "keyframes")
TARGET = 1.2  # the fast decode should be at least this much cheaper


def one(clip: str, mode: str, frames: int) -> dict[str, float]:
    """Thread CPU seconds for about the clip's first ``frames`` frames in ``mode`` (to the first
    frame decoded at or past that), the frames that covers and those decoded."""
    from videoclf.config.sampling import ClassifyOptions
    from videoclf.stages.decode.file import DecodeConfig, FileDecoder

    classify = ClassifyOptions(keyframes=True) if mode == "keyframes" else None
    dec = FileDecoder(DecodeConfig("bench", clip, 256, 224, threads=1, classify=classify, fast=mode == "fast"))
    dec.setup()
    it = dec.frames()
    seq = decoded = 0
    t0 = time.thread_time()
    try:
        for d in it:  # up to and with the first frame decoded at or past ``frames``: all of them paid for
            seq += d.skipped + d.gated + 1
            decoded += 1
            if seq >= frames:
                break
        cpu = time.thread_time() - t0
    finally:
        it.close()
        dec.teardown()
    return {"cpu_s": cpu, "frames": seq, "decoded": decoded}


def run(clip: str, frames: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    one(clip, "normal", min(frames, 30))  # warm the page cache and the libraries
    for r in range(rounds):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            samples[mode].append(one(clip, mode, frames))
    out: dict[str, Any] = {"clip": clip, "frames": frames, "rounds": rounds, "cpu": describe_cpu(cpu_info())}
    for mode, runs in samples.items():
        per_frame = statistics.median(s["cpu_s"] / s["frames"] for s in runs)
        out[mode] = {"ms_per_frame": round(1000 * per_frame, 3), "decoded": runs[0]["decoded"],
                     "ms_per_decoded": round(1000 * statistics.median(s["cpu_s"] / s["decoded"] for s in runs), 3)}
    base = out["normal"]["ms_per_frame"]
    for mode in MODES[1:]:
        out[mode]["cheaper_than_normal"] = round(base / out[mode]["ms_per_frame"], 2)
    out["fast_meets_target"] = out["fast"]["cheaper_than_normal"] >= TARGET
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=None, help="an H.264/HEVC file (default: the 1080p clip)")
    ap.add_argument("--frames", type=int, default=300, help="frames of the clip per measurement")
    ap.add_argument("--rounds", type=int, default=4, help="alternated rounds (each runs every mode once)")
    args = ap.parse_args()
    clip = args.clip or str(make_clip(RESULTS / "clip_1080p30_gop30.mp4"))
    res = run(clip, args.frames, args.rounds)
    print(res["cpu"])
    print(f"{clip}: first {args.frames} frames, one thread, medians of {args.rounds} alternated rounds")
    for mode in MODES:
        m = res[mode]
        ratio = f", {m['cheaper_than_normal']:.2f}x cheaper than normal" if "cheaper_than_normal" in m else ""
        print(f"  {mode:9s} {m['ms_per_frame']:7.2f} ms CPU per frame of the clip ({m['decoded']} decoded, "
              f"{m['ms_per_decoded']:.2f} ms each){ratio}")
    print(f"fast decode target {TARGET}x: {'met' if res['fast_meets_target'] else 'NOT met'}")
    out = save_results("fast_decode", res)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
