"""Bounded-memory latency histograms and per-stage counters."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

# log-spaced buckets, 2 % wide, from 10 µs up: bounded memory for runs of any length
_BASE = 1.02
_MIN_MS = 0.01


class Histogram:
    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        b = 0 if ms <= _MIN_MS else int(math.log(ms / _MIN_MS, _BASE)) + 1
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1
        self.max = max(self.max, ms)

    def merge(self, data: dict) -> None:
        for b, c in data.get("counts", {}).items():
            self.counts[int(b)] = self.counts.get(int(b), 0) + c
        self.n += data.get("n", 0)
        self.max = max(self.max, data.get("max", 0.0))

    def to_dict(self) -> dict:
        return {"counts": dict(self.counts), "n": self.n, "max": self.max}

    def buckets(self) -> list[list[float]]:
        """[upper bound in ms, count] of each non-empty bucket, lowest first."""
        return [[round(_MIN_MS * _BASE ** b, 3), c] for b, c in sorted(self.counts.items())]

    def percentile(self, q: float) -> float | None:
        if not self.n:
            return None
        rank = q / 100 * self.n
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                # bucket midpoint, clamped by the true max
                value = _MIN_MS if b == 0 else _MIN_MS * _BASE ** (b - 0.5)
                return round(min(value, self.max), 2)
        return round(self.max, 2)

    def summary(self) -> dict[str, float | None]:
        return {"p50": self.percentile(50), "p95": self.percentile(95), "p99": self.percentile(99)}


@dataclass
class StageCounters:
    """What the stage loop measures for every stage: items, busy time, wall time."""

    items: int = 0
    dropped: int = 0
    busy_s: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict:
        wall = max(time.monotonic() - self.started, 1e-9)
        return {"items": self.items, "dropped": self.dropped, "busy_s": round(self.busy_s, 3), "wall_s": round(wall, 3),
                "busy_fraction": round(min(self.busy_s / wall, 1.0), 3), "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident set size so far: the kernel's high-water mark of its address
    space (VmHWM), exact even for a stage that lives less than any sampling interval. Not
    ``ru_maxrss``: that keeps the high-water mark of the forked copy of the parent that ran
    before exec, so every spawned stage would report at least the supervisor's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError):
        pass
    return None


def stage_stats(stats: dict[str, dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The latest stats of the first stage whose title starts with ``prefix`` ("sink[", "classify[")."""
    return next((d for t, d in stats.items() if t.startswith(prefix)), {})


def stream_dropped(stats: dict[str, dict[str, Any]], index: int, name: str) -> int:
    """Every frame of a stream that was never classified: dropped by its decoder (no free slot,
    or the live reader's buffer) and stale frames the classifier released unclassified."""
    dec = stats.get(f"decode[{name}]") or {}
    stale = stage_stats(stats, "classify[").get("stale_dropped") or {}
    return dec.get("dropped", 0) + dec.get("buffer_dropped", 0) + stale.get(index, 0)
