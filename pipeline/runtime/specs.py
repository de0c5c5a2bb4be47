"""The typed specs of the three process roles, the control flags every child shares, and a
producer's port: what the plan builds and a stage process runs from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from videoclf.core.contract import Policy
from videoclf.ipc.shm import SlotPool


@dataclass(frozen=True, kw_only=True)
class Control:
    """Shared by every child: the stop, drain and go flags, and the status line to the
    supervisor (an address in a stage process; anything with ``put`` in threads). Built by
    keyword only: four flags of one type in a row would type-check if two were swapped."""

    stop: Any  # set: every loop exits at once
    drain: Any  # set: sources stop reading and send end-of-stream; the rest finishes
    events: Any
    go: Any  # set once the classifier and sink are ready: sources, started beside them, begin
    # set by a classifier that measured one engine stream on the CPU (each inference spread over
    # every core), when its plan says decoders lean beside it: file decoders then switch to
    # the lean thread count their plan carries before decoding (docs/speed.md)
    lean_decode: Any = None


@dataclass(frozen=True)
class Port:
    """A producer's end of a slot link: the pool it owns and its consumer's inbox address."""

    pool: SlotPool
    to: str


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """A decoder: one stream, its own pool into the classifier, and its display port if any."""

    title: str  # e.g. "decode[cam1]"; the process title is "videoclf: <title>"
    kind: str  # STAGES registry name
    config: Any
    stream: int
    out: Port
    policy: Policy = Policy.LOSSLESS
    seq_start: int = 0  # first frame number (after a restart: where the label log stopped)
    max_frames: Optional[int] = None
    display: Any = None  # videoclf.ipc.display.DisplayPort
    seq_base: int = 0  # the stream's first frame number in this run: a camera's max_frames counts from it
    module: str = ""  # the module that registers ``kind``, imported by the stage process
    role: str = "source"


@dataclass(frozen=True, kw_only=True)
class BatchSpec:
    """A classifier: one inbox for every decoder, results to the sink."""

    title: str
    kind: str
    config: Any
    inbox: str
    to: str
    n_streams: int
    max_batch: int = 1
    max_wait_s: float = 0.0
    # streams whose stale frames the classifier may drop: index -> how long a frame may wait (s)
    drop_oldest: Mapping[int, float] = field(default_factory=dict)
    # the plan's rule: file decoders switch to their lean thread count when this classifier
    # measures one engine stream on the CPU (it then sets Control.lean_decode before "ready")
    lean_decode: bool = False
    module: str = ""  # the module that registers ``kind``, imported by the stage process
    role: str = "batch"
    zones: Mapping[int, int] = field(default_factory=dict)  # streams with zones -> their count (inputs a frame)


@dataclass(frozen=True, kw_only=True)
class SinkSpec:
    """The sink: one inbox for the classifier's results and the decoders' display frames."""

    title: str
    kind: str
    config: Any
    inbox: str
    n_streams: int
    last_seq: tuple[int, ...] = ()  # per stream, the last frame its log holds (a restarted sink)
    ended: frozenset = frozenset()  # streams that ended before it started (a restarted sink)
    display: Any = None  # {stream: DisplayGeom} when an output needs pixels
    module: str = ""  # the module that registers ``kind``, imported by the stage process
    role: str = "sink"
    tap: Optional[str] = None  # an inbox that also gets each result, pixels aside (videoclf.runtime.tap)
    # per physical stream, the indices of its logged streams (videoclf.config.zones); () : one each.
    # n_streams, last_seq and the stage's streams count logged streams; ended, physical ones
    zones: tuple[tuple[int, ...], ...] = ()


StageSpec = Union[SourceSpec, BatchSpec, SinkSpec]
