"""The sink's stats records: per-stream tallies (keyed by stream index, the name on the
record, like the decoders'), and the outputs' figures (label logs, retention, disk, alerts,
MQTT). ``to_json()`` makes report.json's sections from them, in one place each."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

from videoclf.core.histogram import Histogram
from videoclf.core.stats import StageStats

Top = tuple[tuple[str, float], ...]


@dataclass(frozen=True, kw_only=True)
class LivePreview:
    """The outputs sink's latest frame of a stream: its labels and its recent rate."""

    top: Top = ()
    seq: int = -1
    pts: Optional[float] = None
    fps: float = 0.0  # over the last ~2 s; 0 once the stream ended


@dataclass(frozen=True, kw_only=True)
class VideoFiles:
    """A stream's annotated video: its files and the frames they hold."""

    files: tuple[str, ...] = ()
    frames: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"files": list(self.files), "frames": self.frames}


@dataclass(frozen=True, kw_only=True)
class StreamStats:
    """What the sink counted for one stream."""

    stream: int = -1
    name: str = ""
    frames: int = 0
    last_seq: Optional[int] = None  # None before the stream's first line
    span_s: Optional[float] = None  # from the first frame's decode to the last one's write
    last_frame_at: Optional[float] = None  # wall-clock time (epoch s) the last frame was written
    end: Optional[str] = None  # why the stream ended (videoclf.core.records.EndOfStream.reason)
    top: Top = ()  # the latest frame's labels
    e2e_ms: Histogram = field(default_factory=Histogram)
    decode_ms: Histogram = field(default_factory=Histogram)
    infer_ms: Histogram = field(default_factory=Histogram)
    live: Optional[LivePreview] = None  # the outputs sink's (the label-log sinks alone have none)
    video: Optional[VideoFiles] = None

    @property
    def fps(self) -> float:
        """Frames written per second over the run (the sustained rate)."""
        return round((self.frames - 1) / self.span_s, 2) if self.span_s else 0.0

    @property
    def fps_now(self) -> float:
        """The recent rate while the live preview measures one, else the run's."""
        return (self.live.fps if self.live is not None else 0.0) or self.fps


@dataclass(frozen=True, kw_only=True)
class LabelLogStats:
    repaired_tails: int = 0  # logs whose torn last line (a killed run) was cut at open
    disk_full_pauses: int = 0
    paused: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class RetentionStats:
    deleted_files: Mapping[str, int] = field(default_factory=dict)  # by kind of file
    deleted_bytes: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"deleted_files": dict(self.deleted_files), "deleted_bytes": dict(self.deleted_bytes)}


@dataclass(frozen=True, kw_only=True)
class DiskStats:
    free_bytes: Optional[int] = None
    min_free: int = 0
    low: bool = False  # below min_free: video and snapshots pause
    pauses: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class WebhookStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0


@dataclass(frozen=True, kw_only=True)
class MqttStats:
    broker: str = ""
    connected: bool = False
    published: int = 0
    dropped: int = 0
    connects: int = 0
    last_error: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class ClipStats:
    """Event clips (stream copies of a camera's packets) the run wrote."""

    files: int = 0  # clip files created
    errors: int = 0  # clips cut short or not written (a failing write, packets that would not mux)
    skipped_low_disk: int = 0  # events without a clip: the disk was below output.min_free

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class AlertStats:
    events: int = 0  # lines written to events.jsonl (alerts' open and close, label changes)
    label_changes: int = 0  # of those, label_change events
    waiting_for_disk: int = 0
    lost_disk_full: int = 0
    webhook: Optional[WebhookStats] = None
    clips: Optional[ClipStats] = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class VideoPauses:
    """What the outputs sink left out while the disk was below output.min_free, or failing."""

    video_frames: int = 0
    snapshots: int = 0
    video_errors: int = 0


@dataclass(frozen=True, kw_only=True)
class SinkStats(StageStats):
    streams: tuple[StreamStats, ...] = ()  # by stream index
    labels: Optional[LabelLogStats] = None
    retention: Optional[RetentionStats] = None
    disk: Optional[DiskStats] = None
    alerts: Optional[AlertStats] = None
    frames_without_display: int = 0
    paused: VideoPauses = field(default_factory=VideoPauses)

    def stream(self, index: int, name: str = "") -> StreamStats:
        if 0 <= index < len(self.streams):
            return self.streams[index]
        return StreamStats(stream=index, name=name)

    def outputs_json(self) -> dict[str, Any]:
        """report.json's ``outputs``: the label logs, retention and disk, where reported."""
        parts = {"labels": self.labels, "retention": self.retention, "disk": self.disk}
        return {k: v.to_json() for k, v in parts.items() if v is not None}
