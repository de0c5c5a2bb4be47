"""Stage contract, the typed specs of the three roles, and the entry point of every stage process.

Stages only transform data: ``setup()`` in the child, ``frames``/``submit``+``collect``/``write``,
``teardown()``. The loops that drive them (``pipeline/runtime/loops.py``) own getting, putting, slot
hand-over, back-pressure, stop checks, metrics and error reporting, identically for every stage.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Iterator, Mapping, Optional, Protocol, Sequence, Union

import numpy as np

from videoclf.core.errors import StageError, VideoclfError
from videoclf.core.records import EndOfStream, Event, FrameRecord, Result
from videoclf.core.stats import StageCounters
from videoclf.core.registry import Registry
from videoclf.ipc.shm import SlotPool

log = logging.getLogger(__name__)

LIVE_WAIT_S = 0.05  # a live source waits this long for a free slot before dropping a frame
POLL_S = 0.1  # every blocking wait in a loop is bounded by this, then the stop event is checked
STATS_EVERY_S = 0.5


class Source(Protocol):
    """``frames()`` yields (model-ready array, pts seconds[, display frame or None]) per frame, or ``None`` as a
    heartbeat while waiting (reconnect back-off, a quiet camera) so the loop can check the
    stop event and report stats; it ends by returning."""

    def setup(self) -> None: ...
    def frames(self) -> Iterator[Optional[tuple[Any, ...]]]: ...  # (array, pts[, t_decoded, decode_ms])
    def stats(self) -> dict[str, Any]: ...
    def teardown(self) -> None: ...


class BatchStage(Protocol):
    max_batch: int
    full: bool  # every engine request busy: collect before the next submit
    pending: int  # batches in flight

    def setup(self) -> None: ...
    def submit(self, inputs: Sequence[np.ndarray], records: Sequence[FrameRecord]) -> None: ...
    def collect(self, block: bool) -> list[tuple[Sequence[FrameRecord], list[Result]]]: ...
    def stats(self) -> dict[str, Any]: ...
    def teardown(self) -> None: ...


class Sink(Protocol):
    def setup(self) -> None: ...
    def write(self, result: Result, frame: Optional[np.ndarray] = None) -> None: ...  # frame: the display frame
    def end(self, eos: EndOfStream) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def teardown(self) -> None: ...


class StageBase:
    """Defaults for the optional hooks."""

    ctrl: Any = None  # the run's Control, set before setup() in a stage process (a wait can see a stop)

    def setup(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}

    def teardown(self) -> None:
        pass


STAGES: Registry[Any] = Registry("stage")
# stage kinds are registered by their modules; a child imports only the module it runs
STAGE_MODULES = {"decode": "videoclf.stages.decode.file", "decode.live": "videoclf.stages.decode.live",
                 "classify": "videoclf.stages.classify.stage", "sink": "videoclf.stages.outputs.labels", "outputs": "videoclf.stages.outputs.stage"}


def build_stage(kind: str, config: Any) -> Any:
    import importlib

    module = STAGE_MODULES.get(kind) or STAGE_MODULES.get(kind.split(".")[0])
    if module:
        importlib.import_module(module)
    return STAGES.get(kind)(config)


class Policy(str, Enum):
    """Back-pressure of a link, named per source kind."""

    LOSSLESS = "lossless"  # the producer waits for a free slot: every frame is classified (files)
    DROP_OLDEST = "drop_oldest"  # live: the consumer keeps only the newest waiting frames, drops counted
    DROP_NEWEST = "drop_newest"  # previews: no free slot at once, and the new frame is skipped


@dataclass(frozen=True)
class Control:
    """Shared by every child: the stop, drain and go flags, and the status line to the
    supervisor (an address in a stage process; anything with ``put`` in threads)."""

    stop: Any  # set: every loop exits at once
    drain: Any  # set: sources stop reading and send end-of-stream; the rest finishes
    events: Any
    go: Any  # set once the classifier and sink are ready: sources, started beside them, begin
    # set by a classifier whose one engine stream spreads each inference over every core: file
    # decoders then halve their automatic FFmpeg thread count before decoding (docs/speed.md)
    lean_decode: Any = None


@dataclass(frozen=True)
class Port:
    """A producer's end of a slot link: the pool it owns and its consumer's inbox address."""

    pool: SlotPool
    to: str


@dataclass(frozen=True)
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
    role: str = "source"


@dataclass(frozen=True)
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
    role: str = "batch"


@dataclass(frozen=True)
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
    role: str = "sink"


StageSpec = Union[SourceSpec, BatchSpec, SinkSpec]


class Reporter:
    """Counters and the stage's own stats, sent to the supervisor every ``STATS_EVERY_S``."""

    def __init__(self, spec: StageSpec, ctrl: Control, stage: Any) -> None:
        self.spec, self.ctrl, self.stage = spec, ctrl, stage
        self.counters = StageCounters()
        self.extra: dict[str, Any] = {}  # what the loop itself measures beyond the counters
        self._next = time.monotonic() + STATS_EVERY_S

    def snapshot(self) -> dict[str, Any]:
        return {**self.counters.to_dict(), **self.stage.stats(), **self.extra,
                "stream": getattr(self.spec, "stream", -1)}

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + STATS_EVERY_S
            self.ctrl.events.put(Event("stats", self.spec.title, self.snapshot()))


class _EventLogHandler(logging.handlers.QueueHandler):
    """Log records go to the supervisor on the child's own status connection."""


def _setup_child_logging(ctrl: Control) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_EventLogHandler(ctrl.events)]
    root.setLevel(logging.DEBUG if os.environ.get("VIDEOCLF_DEBUG") else logging.INFO)


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child if the supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if os.getppid() == 1:  # the parent was already gone before prctl took effect
            os._exit(1)


def _set_title(title: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(f"videoclf: {title}")
    except ImportError:  # optional: titles only help people reading `ps`
        pass


_ANNOUNCE: Optional[tuple[Any, str]] = None  # (event queue, stage title) inside a stage process


def announce_slow_step(seconds: float, what: str) -> None:
    """Tell the supervisor that a one-time setup step (int8 quantisation on a cold cache) may
    take up to ``seconds``: it then waits that long for this stage to be ready instead of its
    usual limit. Outside a stage process (bench, tests) this does nothing."""
    if _ANNOUNCE is not None:
        events, title = _ANNOUNCE
        events.put(Event("slow_step", title, {"seconds": float(seconds), "what": what}))


def child_main(spec: StageSpec, ctrl: Control) -> None:
    """Entry point of every stage process. ``ctrl.events`` is the supervisor's inbox address:
    each child talks to it on a connection of its own."""
    from videoclf.runtime.loops import LOOPS
    from videoclf.ipc.transport import EventOutbox

    # the supervisor owns SIGINT/SIGTERM handling and tells children through the events
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the supervisor stops the run
    _die_with_parent()
    # Stages share few cores. Spinning OpenMP workers (the default) then stall each other:
    # measured here, 2 inference threads beside a busy decoder ran 10-15x slower than with
    # passive waits. Must be set before torch/oneDNN load; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _set_title(spec.title)
    ctrl = replace(ctrl, events=EventOutbox(ctrl.events, spec.title))
    _setup_child_logging(ctrl)
    global _ANNOUNCE
    _ANNOUNCE = (ctrl.events, spec.title)
    stage = None
    code = 0
    try:
        stage = build_stage(spec.kind, spec.config)
        stage.ctrl = ctrl
        stage.setup()
        rep = Reporter(spec, ctrl, stage)
        if getattr(stage, "wants_lean_decode", False) and ctrl.lean_decode is not None:
            ctrl.lean_decode.set()  # before "ready": the supervisor sets go only after it
        ctrl.events.put(Event("ready", spec.title, {}))
        LOOPS[spec.role](stage, spec, ctrl, rep)
        ctrl.events.put(Event("done", spec.title, rep.snapshot()))
    except VideoclfError as exc:
        code = exc.exit_code
        ctrl.events.put(Event("error", spec.title, {"kind": type(exc).__name__, "message": str(exc)}))
    except Exception as exc:  # unexpected: report it with the stage name, keep the traceback in debug
        code = 1
        log.debug("%s failed:\n%s", spec.title, traceback.format_exc())
        ctrl.events.put(Event("error", spec.title, {"kind": StageError.__name__,
                                                     "message": f"{type(exc).__name__}: {exc}"}))
    finally:
        if stage is not None:
            try:
                stage.teardown()
            except Exception as exc:  # a failing teardown must not hide the first error
                log.warning("%s: teardown failed: %s", spec.title, exc)
    sys.exit(code)
