"""Typed stats records: what each stage process measures and sends to the supervisor (a
pickled record, never a dict). The sink's records are in ``videoclf.core.sinkstats``, the
supervisor's aggregate in ``videoclf.core.runstats``.

Every reader (report, terminal, web view, Prometheus, MQTT, restarts) reads attributes, so a
misspelt name is an error, not a silent 0. Dicts appear only at the JSON edge, each made by a
record's ``to_json()``."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, TypeVar

from videoclf.core.histogram import Histogram

R = TypeVar("R", bound="StageStats")


def added(a: Mapping[Any, int], b: Mapping[Any, int]) -> dict[Any, int]:
    """Two tallies by key, summed."""
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}


@dataclass(frozen=True, kw_only=True)
class StageCounts:
    """What the stage loop measured for a stage at one moment."""

    items: int = 0
    dropped: int = 0  # a decoder's frames that found no free slot
    busy_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: Optional[float] = None
    next_seq: int = 0  # a decoder's: the number its next frame gets
    stale_dropped: Mapping[int, int] = field(default_factory=dict)  # the classifier's, by stream index
    results_lost: int = 0  # the classifier's: results its sink never took
    duplicates: int = 0  # the sink's: results sent again after a restart, logged already
    # a decoder's: frames that came out of the decoder (classified or not), and those not
    # classified by the stream's classify options (rate, keyframes only) or its motion gate
    decoded: int = 0
    skipped: int = 0
    gated: int = 0
    undecoded: int = 0  # of ``skipped``, the frames never decoded (keyframes only)

    @property
    def busy_fraction(self) -> float:
        return round(min(self.busy_s / self.wall_s, 1.0), 3) if self.wall_s > 0 else 0.0

    def carried(self, old: StageCounts) -> StageCounts:
        """These counts plus what an earlier generation of the stage counted (its successor
        counts from zero)."""
        return replace(self, dropped=self.dropped + old.dropped, results_lost=self.results_lost + old.results_lost,
                       duplicates=self.duplicates + old.duplicates, skipped=self.skipped + old.skipped,
                       gated=self.gated + old.gated, undecoded=self.undecoded + old.undecoded,
                       stale_dropped=added(self.stale_dropped, old.stale_dropped))

    def to_json(self) -> dict[str, Any]:
        """report.json's per-process figures."""
        return {"items": self.items, "busy_s": self.busy_s, "wall_s": self.wall_s,
                "busy_fraction": self.busy_fraction, "peak_rss_mb": self.peak_rss_mb}


@dataclass
class StageCounters:
    """What the stage loop counts in a stage process while it runs; ``snapshot()`` is sent."""

    items: int = 0
    dropped: int = 0
    busy_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    next_seq: int = 0
    stale_dropped: dict[int, int] = field(default_factory=dict)
    results_lost: int = 0
    duplicates: int = 0
    decoded: int = 0
    skipped: int = 0
    gated: int = 0
    undecoded: int = 0

    def snapshot(self) -> StageCounts:
        wall = max(time.monotonic() - self.started, 1e-9)
        return StageCounts(items=self.items, dropped=self.dropped, busy_s=round(self.busy_s, 3), wall_s=round(wall, 3),
                           peak_rss_mb=peak_rss_mb(), next_seq=self.next_seq, stale_dropped=dict(self.stale_dropped),
                           results_lost=self.results_lost, duplicates=self.duplicates, decoded=self.decoded,
                           skipped=self.skipped, gated=self.gated, undecoded=self.undecoded)


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


@dataclass(frozen=True, kw_only=True)
class StageStats:
    """What every stage process reports: the loop's counts (the stage's own figures are in
    the subclass of its role)."""

    counts: StageCounts = field(default_factory=StageCounts)

    def carried(self: R, old: StageStats) -> R:
        """This record with the cumulative counters of an earlier generation added."""
        return replace(self, counts=self.counts.carried(old.counts))


@dataclass(frozen=True, kw_only=True)
class LiveStats:
    """A live source's connection bookkeeping (``videoclf.stages.decode.live``)."""

    input_frames: int = 0  # every frame the camera delivered, dropped ones too
    input_fps: float = 0.0
    reconnects: int = 0
    disconnects: int = 0
    downtime_s: float = 0.0
    connected: bool = False
    connect_attempts: int = 0
    auth_failures: int = 0
    buffer_dropped: int = 0  # dropped (oldest) by the reader while the decoder was busy
    gave_up: bool = False
    state: str = "connecting"  # connecting | live | reconnecting | gave_up
    transport: Optional[str] = None  # RTSP only: tcp | udp

    def carried(self, old: LiveStats) -> LiveStats:
        return replace(self, reconnects=self.reconnects + old.reconnects, disconnects=self.disconnects + old.disconnects,
                       downtime_s=round(self.downtime_s + old.downtime_s, 3),
                       buffer_dropped=self.buffer_dropped + old.buffer_dropped)


@dataclass(frozen=True, kw_only=True)
class DecoderStats(StageStats):
    """One stream's decoder, keyed by its stream index (the name rides along)."""

    stream: int = -1
    name: str = ""
    source: Optional[Mapping[str, Any]] = None  # what the probe found: report.json's "input"
    decode_errors: int = 0
    last_error: Optional[str] = None
    passes: int = 1  # a looping file's passes
    live: Optional[LiveStats] = None  # a live source's; None for a file

    def carried(self, old: StageStats) -> DecoderStats:
        out = replace(self, counts=self.counts.carried(old.counts))
        if isinstance(old, DecoderStats) and self.live is not None and old.live is not None:
            out = replace(out, live=self.live.carried(old.live))
        return out

    @property
    def gave_up(self) -> bool:
        return self.live is not None and self.live.gave_up


@dataclass(frozen=True, kw_only=True)
class ClassifierStats(StageStats):
    model: Mapping[str, Any] = field(default_factory=dict)  # the engine's description: report.json's "model"
    batches: int = 0
    infer_ms: Histogram = field(default_factory=Histogram)
    batch: int = 0  # largest batch
    in_flight: int = 0  # engine requests at once
