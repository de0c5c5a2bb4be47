"""What one inference costs when frames arrive paced instead of back to back, alone and
beside a decoder: the engine's CPU time per image at several gaps between inferences.

Usage (run by hand, not in CI; quote medians, the machine may be shared):
    python benchmarks/engine_pacing.py [--backbone mobilenet_v2] [--precision int8]
        [--gaps 0,1,3.5,10] [--batch 1] [--seconds 6] [--repeat 2]
    smoke test: python benchmarks/engine_pacing.py --gaps 0,3.5 --seconds 1 --repeat 1

The machine limit in benchmarks/naive_vs_pipeline.py adds up a decode-only pass and a model-only
pass, each run back to back with nothing else on the machine. In a pipeline the engine waits for
frames between inferences, and a decoder runs beside it; this measures what that does to the
engine's own cost, so the two can be told apart from the pipeline's overhead.

It prints the CPU first, then per gap and side (alone, or beside a one-thread decode-only pass of
the 1080p benchmark clip in another process) the median over --repeat rounds of:
  engine ms   CPU time of the engine's threads (every thread but the calling one) per image;
  caller ms   CPU time of the calling thread per image (submit, wait, sleep's wake-up);
  ratio       engine ms divided by the back-to-back (gap 0) figure of the same side and round.
The engine is videoclf's OpenVINO backend at one thread, batch --batch (per image: CPU / (batches x
batch); the gap is between batches), one request in flight, u8 NHWC
input, on the model file that `videoclf run` exports (int8 with weights none: plain post-training
quantisation on the clip, cached). Gaps are time.sleep between one inference's end and the next
start; sides and gaps alternate in order from round to round.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from handwritten import cpu_info, describe_cpu  # noqa: E402
from naive_vs_pipeline import RESULTS, make_clip, prime  # noqa: E402

DECODER = """
import time
from videoclf.stages.decode.file import decode_cost
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    decode_cost({clip!r}, 256, 224, None, 120, 1)
"""


def thread_cpu_s() -> tuple[float, float]:
    """(this thread's CPU s, every other thread's CPU s) of this process."""
    mine = time.thread_time()
    return mine, time.process_time() - mine


def paced(engine, frame, gap_s: float, seconds: float) -> tuple[float, float, int]:
    """Batches (``frame``: NHWC) one at a time with ``gap_s`` of sleep between them: (engine CPU
    ms/image, caller CPU ms/image, images)."""
    n, (c0, e0), t0 = 0, thread_cpu_s(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        engine.submit([frame], None, stacked=True)
        engine.collect(True)
        n += len(frame)
        if gap_s:
            time.sleep(gap_s)
    c1, e1 = thread_cpu_s()
    return 1e3 * (e1 - e0) / n, 1e3 * (c1 - c0) / n, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--precision", default="int8", choices=("fp32", "bf16", "int8"))
    ap.add_argument("--gaps", default="0,1,3.5,10", help="comma list of ms between inferences (0: back to back)")
    ap.add_argument("--batch", type=int, default=1, help="images per inference")
    ap.add_argument("--seconds", type=float, default=6.0, help="per gap and side")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    gaps = sorted({0.0, *(float(g) for g in args.gaps.split(","))})  # 0: the baseline of every ratio, run first
    print(describe_cpu(cpu_info()), flush=True)

    import numpy as np

    from videoclf.stages.classify.backends.openvino_backend import Input, OpenVinoBackend

    clip = make_clip(RESULTS / "clip_1080p30_gop30.mp4")
    model = prime(clip, args.backbone, args.precision, {})
    crop = int(model["input"])
    engine = OpenVinoBackend(model["model_file"], model["precision"], 1, Input(crop, (0.5,) * 3, (0.5,) * 3),
                             max_batch=args.batch)
    frame = np.random.default_rng(0).integers(0, 256, (args.batch, crop, crop, 3), dtype=np.uint8)
    for _ in range(20):  # warm-up: kernels prepared, caches filled
        engine.submit([frame], None, stacked=True)
        engine.drain()
    print(f"{args.backbone} {model['precision']} ({model['model_file']}), one engine thread, batch {args.batch}, "
          f"{args.seconds:g} s per gap and side, {args.repeat} rounds", flush=True)

    rows: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
    for r in range(args.repeat):
        sides = ["alone", "beside a decoder"] if r % 2 == 0 else ["beside a decoder", "alone"]
        for side in sides:
            dec = None
            if side != "alone":
                code = DECODER.format(clip=str(clip), seconds=args.seconds * len(gaps) + 5)
                dec = subprocess.Popen([sys.executable, "-c", code])
                time.sleep(1.0)  # its imports and first frames
            try:
                base = None
                for gap in (gaps if r % 2 == 0 else [0.0, *reversed(gaps[1:])]):
                    eng_ms, call_ms, n = paced(engine, frame, gap / 1e3, args.seconds)
                    if gap == 0.0:
                        base = eng_ms
                    rows.setdefault((side, gap), []).append((eng_ms, call_ms, eng_ms / base))
                    print(f"  round {r + 1}, {side}, gap {gap:g} ms: engine {eng_ms:.2f} ms, caller {call_ms:.2f} ms "
                          f"per image ({n} images)", flush=True)
            finally:
                if dec is not None:
                    dec.kill()
                    dec.wait()

    print(f"\n{'side':18s} {'gap ms':>7s} {'engine ms':>10s} {'caller ms':>10s} {'ratio':>7s}")
    for side in ("alone", "beside a decoder"):
        for gap in gaps:
            vals = rows[(side, gap)]
            med = [statistics.median(v[i] for v in vals) for i in range(3)]
            print(f"{side:18s} {gap:7g} {med[0]:10.2f} {med[1]:10.2f} {med[2]:6.2f}×")
    print("\nratio: the engine's CPU per image against back to back (gap 0) on the same side and round; "
          "the machine limit counts the gap-0 figure alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
