"""The stage contract: what a decode, classify or sink stage implements, and the registry of
stage kinds.

Stages only transform data: ``setup()`` in the child, ``frames``/``submit``+``collect``/``write``,
``teardown()``. The loops that drive them (``videoclf.runtime.loops``) own getting, putting, slot
hand-over, back-pressure, stop checks, metrics and error reporting, identically for every stage.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Iterator, Optional, Protocol, Sequence

import numpy as np

from videoclf.core.records import EndOfStream, Event, FrameRecord, Result
from videoclf.core.registry import Registry
from videoclf.core.stats import StageStats


class Source(Protocol):
    """``frames()`` yields (model-ready array, pts seconds[, display frame or None]) per frame, or ``None`` as a
    heartbeat while waiting (reconnect back-off, a quiet camera) so the loop can check the
    stop event and report stats; it ends by returning."""

    def setup(self) -> None: ...
    def frames(self) -> Iterator[Optional[tuple[Any, ...]]]: ...  # (array, pts[, t_decoded, decode_ms])
    def stats(self) -> Optional[StageStats]: ...  # a DecoderStats
    def teardown(self) -> None: ...


class BatchStage(Protocol):
    max_batch: int
    full: bool  # every engine request busy: collect before the next submit
    pending: int  # batches in flight
    # measured in setup: the engine runs one stream on the CPU, each inference over all its
    # threads; the decoders then lean when their plan says so (BatchSpec.lean_decode)
    one_cpu_stream: bool

    def setup(self) -> None: ...
    def submit(self, inputs: Sequence[np.ndarray], records: Sequence[FrameRecord]) -> None: ...
    def collect(self, block: bool) -> list[tuple[Sequence[FrameRecord], list[Result]]]: ...
    def stats(self) -> Optional[StageStats]: ...  # a ClassifierStats
    def teardown(self) -> None: ...


class Sink(Protocol):
    def setup(self) -> None: ...
    def prepare(self, result: Result) -> Result: ...  # before the tap and write: the smoothed labels added
    def write(self, result: Result, frame: Optional[np.ndarray] = None) -> None: ...  # frame: the display frame
    def end(self, eos: EndOfStream) -> None: ...
    # a stream added (or changed) while the run goes on: ``config`` is the sink's whole config
    # for the new set of streams; the stage takes stream ``stream``'s part of it
    def add_stream(self, stream: int, config: Any) -> None: ...
    def stats(self) -> Optional[StageStats]: ...  # a SinkStats
    def teardown(self) -> None: ...


class StageBase:
    """Defaults for the optional hooks."""

    ctrl: Any = None  # the run's Control, set before setup() in a stage process (a wait can see a stop)

    def setup(self) -> None:
        pass

    def stats(self) -> Optional[StageStats]:
        """The stage's own figures; ``None``: only the loop's counts."""
        return None

    def prepare(self, result: Any) -> Any:
        """A sink's result before anything is sent or written (the smoothed labels); as is by default."""
        return result

    def teardown(self) -> None:
        pass


STAGES: Registry[Any] = Registry("stage")  # stage kinds, registered by the modules that define them


class Policy(str, Enum):
    """Back-pressure of a link, named per source kind."""

    LOSSLESS = "lossless"  # the producer waits for a free slot: every frame is classified (files)
    DROP_OLDEST = "drop_oldest"  # live: the consumer keeps only the newest waiting frames, drops counted
    DROP_NEWEST = "drop_newest"  # previews: no free slot at once, and the new frame is skipped


_ANNOUNCE: Optional[tuple[Any, str]] = None  # (event queue, stage title) inside a stage process


def announce_slow_step(seconds: float, what: str) -> None:
    """Tell the supervisor that a one-time setup step (int8 quantisation on a cold cache) may
    take up to ``seconds``: it then waits that long for this stage to be ready instead of its
    usual limit. Outside a stage process (bench, tests) this does nothing."""
    if _ANNOUNCE is not None:
        events, title = _ANNOUNCE
        events.put(Event("slow_step", title, {"seconds": float(seconds), "what": what}))


def set_announcer(events: Any, title: str) -> None:
    """Called once by a stage process: where ``announce_slow_step`` sends its notice."""
    global _ANNOUNCE
    _ANNOUNCE = (events, title)
