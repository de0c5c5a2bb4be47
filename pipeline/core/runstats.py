"""The supervisor's aggregate of a run's stats: the latest record of each stage, by role."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

from videoclf.core.sinkstats import SinkStats, StreamStats
from videoclf.core.stats import ClassifierStats, DecoderStats, StageStats


@dataclass(frozen=True)
class DroppedBy:
    """Where a stream's frames were dropped: by the live reader when the decoder fell behind
    (``reader``), by the decoder when no slot was free (``no_slot``), and as stale frames the
    classifier released unclassified when inference fell behind (``stale``)."""

    reader: int = 0
    no_slot: int = 0
    stale: int = 0

    @property
    def total(self) -> int:
        return self.reader + self.no_slot + self.stale

    def to_json(self) -> dict[str, int]:
        return asdict(self)


ROLE_RECORDS: dict[str, type[StageStats]] = {"source": DecoderStats, "batch": ClassifierStats, "sink": SinkStats}


class RunStats:
    """The latest stats of each stage of a run, kept by role: one decoder per stream, the
    classifier, the sink. The report, the terminal, the web view, Prometheus and MQTT ask by
    role and stream index, never by a stage's title. The supervisor writes; servers read a
    ``snapshot()`` from their own threads."""

    def __init__(self, names: Sequence[str] = (), physical: Optional[Mapping[int, int]] = None) -> None:
        # names: the logged streams (a stream with zones: one per zone, videoclf.config.zones);
        # physical: a zone's index -> its stream's, whose decoder it shares (else the same index)
        self.names = tuple(names)
        self._physical = dict(physical or {})
        self._decoders: dict[int, DecoderStats] = {}
        self._classifier = ClassifierStats()
        self._sink = SinkStats()
        self._stages: dict[str, StageStats] = {}  # by title, for the report's per-process section
        self._lock = threading.Lock()

    def put(self, role: str, stream: int, title: str, data: StageStats) -> None:
        if not isinstance(data, ROLE_RECORDS[role]):
            raise TypeError(f"{title}: a {role} stage reports {ROLE_RECORDS[role].__name__}, "
                            f"not {type(data).__name__}")
        with self._lock:
            if isinstance(data, DecoderStats):
                self._decoders[stream] = data
            elif isinstance(data, ClassifierStats):
                self._classifier = data
            elif isinstance(data, SinkStats):
                self._sink = data
            self._stages[title] = data

    def add_stream(self, index: int, name: str) -> None:
        """A stream added while the run goes on (``index`` = the number of streams), or a
        removed one added again under its index."""
        with self._lock:
            names = list(self.names)
            names[index:index + 1] = [name]
            self.names = tuple(names)

    def forget_sink(self) -> None:
        """A new sink counts from zero: its predecessor's tallies are carried elsewhere."""
        with self._lock:
            self._sink = SinkStats()

    def decoder(self, index: int) -> DecoderStats:
        """The decoder of stream ``index`` (a zone's: its stream's; a stream's index is its first zone's)."""
        index = self._physical.get(index, index)
        return self._decoders.get(index) or DecoderStats(stream=index, name=self._name(index))

    @property
    def classifier(self) -> ClassifierStats:
        return self._classifier

    @property
    def sink(self) -> SinkStats:
        return self._sink

    def stream(self, index: int) -> StreamStats:
        """What the sink counted for one stream (frames, last frame number, latencies)."""
        return self._sink.stream(index, self._name(index))

    def dropped(self, index: int) -> int:
        """Every frame of a stream that was never classified."""
        return self.dropped_by(index).total

    def dropped_by(self, index: int) -> DroppedBy:
        dec = self.decoder(index)
        return DroppedBy(reader=dec.live.buffer_dropped if dec.live else 0, no_slot=dec.counts.dropped,
                         stale=self._classifier.counts.stale_dropped.get(self._physical.get(index, index), 0))

    def stages(self) -> dict[str, StageStats]:
        with self._lock:
            return dict(self._stages)

    def snapshot(self) -> RunStats:
        with self._lock:
            copy = RunStats(self.names, self._physical)
            copy._decoders, copy._classifier, copy._sink = dict(self._decoders), self._classifier, self._sink
            copy._stages = dict(self._stages)
        return copy

    def _name(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else ""
