"""Bounded-memory latency histograms: log-spaced buckets, 2 % wide, summarised as percentiles."""
from __future__ import annotations

import math

# log-spaced buckets, 2 % wide, from 10 µs up: bounded memory for runs of any length
_BASE = 1.02
_MIN_MS = 0.01


class Histogram:
    """Latencies in ms: counts per bucket, their number and the largest."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        b = 0 if ms <= _MIN_MS else int(math.log(ms / _MIN_MS, _BASE)) + 1
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1
        self.max = max(self.max, ms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and (self.counts, self.n, self.max) == (other.counts, other.n, other.max)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> "Histogram":
        """A snapshot that later ``add`` calls leave alone (what a stats record carries)."""
        h = Histogram()
        h.counts, h.n, h.max = dict(self.counts), self.n, self.max
        return h

    def upper_ms(self, bucket: int) -> float:
        """The upper bound of a bucket, in ms."""
        return _MIN_MS if bucket == 0 else _MIN_MS * _BASE ** bucket

    def mid_ms(self, bucket: int) -> float:
        """A bucket's representative value (its log midpoint), in ms."""
        return _MIN_MS if bucket == 0 else _MIN_MS * _BASE ** (bucket - 0.5)

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
                return round(min(self.mid_ms(b), self.max), 2)
        return round(self.max, 2)

    def summary(self) -> dict[str, float | None]:
        return {"p50": self.percentile(50), "p95": self.percentile(95), "p99": self.percentile(99)}
