"""What smoothing and label-change detection cost the sink per frame, run by hand (not a
test): ``Smoother.update`` (a window of 15 and an EMA of 0.1) plus ``ChangeDetector.update``
against what the sink already pays for every frame, formatting its label line (the baseline),
on the same top-3 lists, alternated, medians of --repeat rounds. The top-3 lists flicker
between a few labels, as a camera's do.

  .venv/bin/python benchmarks/smoothing.py [--repeat 9] [--frames 20000]
"""
from __future__ import annotations

import argparse
import platform
import random
import statistics
import time


def tops(n: int, seed: int = 1) -> list[tuple[tuple[str, float], ...]]:
    rng = random.Random(seed)
    labels = [f"label{i}" for i in range(8)]
    out = []
    for _ in range(n):
        pick = rng.sample(labels, 3)
        s = sorted((rng.random() for _ in range(3)), reverse=True)
        out.append(tuple((lbl, round(v / 2, 5)) for lbl, v in zip(pick, s)))
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> int:
    from videoclf.config.smoothing import LabelChange, SmoothOptions
    from videoclf.stages.outputs.labellog import format_line, label_record
    from videoclf.stages.outputs.smoothing import ChangeDetector, Smoother

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--frames", type=int, default=20000)
    a = ap.parse_args()
    frames = tops(a.frames)

    def line() -> None:
        for i, t in enumerate(frames):
            format_line("jsonl", label_record("cam", i, i / 25, 1.7e9 + i / 25, t))

    def smooth(opts: SmoothOptions):
        def run() -> None:
            sm, det = Smoother(opts, 3), ChangeDetector(LabelChange())
            for i, t in enumerate(frames):
                det.update(sm.update(t), i, i / 25)
        return run

    cases = {"label line (baseline)": line, "window 15 + change": smooth(SmoothOptions(window=15)),
             "ema 0.1 + change": smooth(SmoothOptions(ema=0.1))}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(a.repeat):  # alternated: each round runs every case once
        for k, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e6 / len(frames))
    base = statistics.median(times["label line (baseline)"])
    print(f"{cpu_name()}; {len(frames)} frames of top-3, median of {a.repeat} alternated rounds")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"  {k:24s} {m:6.2f} us/frame  ({m / base:.2f}x the label line)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
