"""Small records that travel through queues; pixels stay in shared memory."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional


class Decoded(NamedTuple):
    """What a source yields per frame. A plain (array, pts) tuple is accepted too."""

    array: Any  # model-ready crop×crop RGB uint8
    pts: Optional[float]
    display: Any = None  # whole frame (I420) for the display path, when one is configured
    t_decoded: Optional[float] = None  # time.monotonic() when decoded, if not "now" (threaded sources)
    decode_ms: Optional[float] = None
    # frames the decoder passed over since the last one it yielded (each still takes a frame number):
    skipped: int = 0  # not classified by the stream's classify options (rate, keyframes only)
    gated: int = 0  # not classified by its motion gate (the picture had not changed)
    undecoded: int = 0  # of ``skipped``, those never decoded (keyframes only)


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """A frame waiting in a pool slot."""

    stream: int  # index into the config's stream list
    seq: int  # 0-based index of the decoded frame in its stream
    slot: int
    pts: Optional[float]  # presentation time in seconds (None if the container gives none)
    time: float  # wall-clock epoch seconds when the frame was decoded
    t_decoded: float  # time.monotonic() at decode; system-wide, so comparable across processes
    decode_ms: float


@dataclass(frozen=True, slots=True)
class Result:
    """A classified frame on its way to the sinks."""

    frame: FrameRecord
    top: tuple[tuple[str, float], ...]
    infer_ms: float
    batch: int
    # given by keyword only: two optional fields of the same kind must never swap places
    # the stream's smoothed top-k after this frame (the sink sets it where the stream smooths its labels)
    smoothed: Optional[tuple[tuple[str, float], ...]] = field(default=None, kw_only=True)
    zone: Optional[int] = field(default=None, kw_only=True)  # the stream's zone this result is of; None: the whole stream


@dataclass(frozen=True, slots=True)
class EndOfStream:
    stream: int
    frames: int
    reason: str = "end"  # end | limit | stopped | error


@dataclass(frozen=True, slots=True)
class Event:
    """Child → supervisor status: ready, stats, error, done."""

    kind: str
    stage: str
    data: Any = field(default_factory=dict)  # stats and done: a videoclf.core.stats record


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on every connection: who is talking. ``role`` is source (a decoder to
    the classifier), display (a decoder to the sink), classify (the classifier to the sink) or
    supervisor (ends a given-up stream for it); ``pool`` names the producer's slot pool."""

    role: str
    stream: int = -1
    pool: Any = None  # videoclf.ipc.shm.PoolSpec


@dataclass(frozen=True, slots=True)
class Resume:
    """The sink to a classifier that connects: per stream, the last frame number its logs hold
    (-1: none) and the streams it has ended; the classifier replays what comes after."""

    last: tuple[int, ...]
    ended: frozenset = frozenset()


@dataclass(frozen=True, slots=True)
class Ack:
    """A stream's end reached the label log (sink → classifier → decoder): its producer may exit."""

    stream: int


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """The supervisor to the classifier, passed on to the sink: stream ``stream`` is (now)
    this one: added to a running run, or changed (its decoder restarts alone). Sent before the
    stream's decoder starts; the classifier answers ``Ack(stream)`` once it holds it and sends
    it on to the sink ahead of any of the stream's results."""

    stream: int
    name: str
    drop_oldest_s: Optional[float]  # how long a frame may wait (a camera), None: lossless (a file)
    last_seq: int  # the last frame its label log holds (-1: none): the sink logs what comes after
    sink: Any  # the sink's whole config for the new set of streams (its stage takes stream ``stream``'s part)
    display: Any = None  # the stream's DisplayGeom, when an output needs pixels


@dataclass(frozen=True)
class DisplayGeom:
    """Size of the display frames of one stream (even, as YUV420 needs) and its frame rate."""

    width: int
    height: int
    fps: float
    every_frame: bool  # True: every frame (annotated video); False: previews only
    preview_interval_s: float = 0.5

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height * 3 // 2, self.width)  # I420 planes stacked, as PyAV returns them
