"""Bounded-memory latency histograms and per-stage counters."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

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


class RunStats:
    """The latest stats of each stage of a run, kept by role: one decoder per stream, the
    classifier, the sink. The report, the terminal, the web view, Prometheus and MQTT ask by
    role and stream index, never by a stage's title. The supervisor writes; servers read a
    ``snapshot()`` from their own threads."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.names = tuple(names)
        self._decoders: dict[int, dict[str, Any]] = {}
        self._classifier: dict[str, Any] = {}
        self._sink: dict[str, Any] = {}
        self._stages: dict[str, dict[str, Any]] = {}  # by title, for the report's per-process section
        self._lock = threading.Lock()

    def put(self, role: str, stream: int, title: str, data: dict[str, Any]) -> None:
        with self._lock:
            if role == "source":
                self._decoders[stream] = data
            elif role == "batch":
                self._classifier = data
            else:
                self._sink = data
            self._stages[title] = data

    def forget_sink(self) -> None:
        """A new sink counts from zero: its predecessor's tallies are carried elsewhere."""
        with self._lock:
            self._sink = {}

    def decoder(self, index: int) -> dict[str, Any]:
        return self._decoders.get(index) or {}

    @property
    def classifier(self) -> dict[str, Any]:
        return self._classifier

    @property
    def sink(self) -> dict[str, Any]:
        return self._sink

    def tally(self, name: str) -> dict[str, Any]:
        """What the sink counted for one stream (frames, last frame number, latencies)."""
        return (self._sink.get("streams") or {}).get(name) or {}

    def dropped(self, index: int) -> int:
        """Every frame of a stream that was never classified (the sum of ``dropped_by``)."""
        return sum(self.dropped_by(index).values())

    def dropped_by(self, index: int) -> dict[str, int]:
        """Where a stream's frames were dropped: by the live reader when the decoder fell behind
        (``reader``), by the decoder when no slot was free (``no_slot``), and as stale frames the
        classifier released unclassified when inference fell behind (``stale``)."""
        dec = self.decoder(index)
        stale = self._classifier.get("stale_dropped") or {}
        return {"reader": dec.get("buffer_dropped", 0), "no_slot": dec.get("dropped", 0),
                "stale": stale.get(index, 0)}

    def stages(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._stages)

    def snapshot(self) -> "RunStats":
        with self._lock:
            copy = RunStats(self.names)
            copy._decoders, copy._classifier, copy._sink = dict(self._decoders), self._classifier, self._sink
            copy._stages = dict(self._stages)
        return copy
