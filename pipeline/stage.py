"""Stage contract and the loops that drive stages inside their processes.

Stages only transform data: ``setup()`` in the child, ``process``/``frames``/``write``,
``teardown()``. The loops here own getting, putting, slot hand-over, back-pressure, stop
checks, metrics and error reporting, identically for every stage.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Optional, Protocol, Sequence

import numpy as np

from pipeline.display import DisplayMatcher, display_links, send_display
from pipeline.errors import StageError, VideoclfError
from pipeline.messages import Decoded, EndOfStream, Event, FrameRecord, Result
from pipeline.metrics import StageCounters
from pipeline.registry import Registry
from pipeline.shm import SlotPool

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
    def write(self, result: Result) -> None: ...
    def end(self, eos: EndOfStream) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def teardown(self) -> None: ...


class StageBase:
    """Defaults for the optional hooks."""

    def setup(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}

    def teardown(self) -> None:
        pass


STAGES: Registry[Any] = Registry("stage")
# stage kinds are registered by their modules; a child imports only the module it runs
STAGE_MODULES = {"decode": "stages.decode", "decode.live": "stages.live",
                 "classify": "stages.classify", "sink": "stages.sinks", "outputs": "stages.outputs"}


def build_stage(kind: str, config: Any) -> Any:
    import importlib

    module = STAGE_MODULES.get(kind) or STAGE_MODULES.get(kind.split(".")[0])
    if module:
        importlib.import_module(module)
    return STAGES.get(kind)(config)


@dataclass(frozen=True)
class Control:
    """Shared by every child: one stop event, one drain event, the event and log queues."""

    stop: Any  # set: every loop exits at once
    drain: Any  # set: sources stop reading and send end-of-stream; the rest finishes
    events: Any
    logs: Any
    go: Any  # set once the classifier and sink are ready: sources, started beside them, begin


@dataclass(frozen=True)
class Link:
    """Producer → consumer through a slot pool: records travel on ``channel``."""

    pool: SlotPool
    channel: Any


@dataclass(frozen=True)
class StageSpec:
    """Everything a child needs, all picklable: heavy objects are built in the child."""

    title: str  # e.g. "decode[cam1]"; the process title is "videoclf: <title>"
    kind: str  # STAGES registry name
    config: Any
    role: str  # source | batch | sink
    inbox: Any = None  # Link, or for batch: (channel, {stream: pool})
    outbox: Any = None  # Link, or a plain queue for results
    policy: str = "lossless"  # for sources: lossless | drop_oldest
    stream: int = -1
    seq_start: int = 0  # first frame number (after a restart: where the label log stopped)
    max_frames: Optional[int] = None
    n_streams: int = 1
    max_batch: int = 1
    max_wait_s: float = 0.0
    drop_oldest: frozenset = frozenset()  # batch: streams whose stale frames the classifier may drop
    display: Any = None  # DisplayPort (source) or {stream: DisplayPort} (sink): see pipeline/display.py


class _Reporter:
    def __init__(self, spec: StageSpec, ctrl: Control, stage: Any) -> None:
        self.spec, self.ctrl, self.stage = spec, ctrl, stage
        self.counters = StageCounters()
        self.extra: dict[str, Any] = {}  # what the loop itself measures beyond the counters
        self._next = time.monotonic() + STATS_EVERY_S

    def snapshot(self) -> dict[str, Any]:
        return {**self.counters.to_dict(), **self.stage.stats(), **self.extra, "stream": self.spec.stream}

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + STATS_EVERY_S
            self.ctrl.events.put(Event("stats", self.spec.title, self.snapshot()))


def _get(channel: Any, timeout: float = POLL_S) -> Any:
    """Bounded get that returns None on timeout so the caller can check the stop event."""
    try:
        return channel.get(timeout=timeout) if timeout > 0 else channel.get_nowait()
    except queue.Empty:
        return None


def _acquire_lossless(pool: SlotPool, ctrl: Control) -> int | None:
    while not ctrl.stop.is_set():
        slot = pool.acquire(POLL_S)
        if slot is not None:
            return slot
    return None


def _acquire_or_skip(pool: SlotPool, ctrl: Control) -> tuple[int | None, int]:
    """Drop policy of a live source: the channel to the classifier is shared with the other
    streams, so its queued frames cannot be reclaimed; wait briefly for a free slot, else drop
    this frame. A live source keeps its freshest frames meanwhile (its reader's buffer drops
    the oldest), and every drop is counted."""
    if ctrl.stop.is_set():
        return None, 0
    slot = pool.acquire(LIVE_WAIT_S)
    return (slot, 0) if slot is not None else (None, 1)


_END = object()


def _await_go(frames: Iterator[Any], ctrl: Control, lossless: bool) -> int:
    """Sources start while the model loads. A file waits (its first frame is decoded when the
    classifier can take it); a live source keeps taking the camera's frames and discards them,
    so that it starts on fresh ones. Returns how many it discarded."""
    discarded = 0
    while not ctrl.go.is_set():
        if ctrl.stop.is_set() or ctrl.drain.is_set():
            break
        if lossless:
            ctrl.go.wait(POLL_S)
        elif next(frames, None) is not None:
            discarded += 1
    return discarded


def run_source(stage: Source, spec: StageSpec, ctrl: Control, rep: _Reporter) -> None:
    out: Link = spec.outbox
    lossless = spec.policy != "drop_oldest"
    # after a restart, numbering goes on where the label log stopped; a file is decoded again
    # from the start and frames already classified are skipped, so each is logged once
    seq = 0 if lossless else spec.seq_start
    reason = "end"
    dropped = 0
    frames = stage.frames()
    discarded = _await_go(frames, ctrl, lossless)
    if discarded:
        log.info("%s: %d frames discarded while the model loaded", spec.title, discarded)
    rep.counters.started = time.monotonic()  # busy fraction and FPS count from the start of work
    while True:
        if ctrl.stop.is_set() or ctrl.drain.is_set():
            reason = "stopped"
            break
        if spec.max_frames is not None and seq >= spec.max_frames:
            reason = "limit"
            break
        t0 = time.monotonic()
        item = next(frames, _END)
        if item is _END:
            break
        if item is None:  # heartbeat: nothing decoded yet
            rep.tick()
            continue
        if lossless and seq < spec.seq_start:
            seq += 1
            continue
        d = item if isinstance(item, Decoded) else Decoded(*item)
        array, pts = d.array, d.pts
        t1 = time.monotonic()
        # a threaded live source hands over when it decoded the frame and how long that took
        t_dec = d.t_decoded if d.t_decoded is not None else t1
        dec_ms = d.decode_ms if d.decode_ms is not None else (t1 - t0) * 1000
        if spec.display is not None and d.display is not None:
            # the display frame goes first: the sink gets it before the Result it belongs to
            rec = FrameRecord(spec.stream, seq, -1, pts, time.time(), t_dec, dec_ms)
            sent, n_dropped = send_display(spec.display, d.display, rec, lossless, ctrl.stop)
            dropped += n_dropped
            if not sent and spec.display.geom.every_frame and lossless:
                reason = "stopped"
                break
        if lossless:
            slot = _acquire_lossless(out.pool, ctrl)
        else:
            slot, n_dropped = _acquire_or_skip(out.pool, ctrl)
            dropped += n_dropped
            if slot is None and n_dropped:
                # the frame keeps its number (a gap in the log): a display frame already sent
                # under it is never paired with another frame's result
                seq += 1
                rep.counters.dropped = dropped
                continue
        if slot is None:
            reason = "stopped"
            break
        np.copyto(out.pool.view(slot), array)
        out.channel.put(FrameRecord(spec.stream, seq, slot, pts, time.time(), t_dec, dec_ms))
        seq += 1
        rep.counters.items += 1
        rep.counters.busy_s += dec_ms / 1000  # decoding only: waiting for a free slot is not work
        rep.counters.dropped = dropped
        rep.tick()
    close = getattr(frames, "close", None)
    if close:
        close()
    out.channel.put(EndOfStream(spec.stream, seq, reason))


class _Backlog:
    """Frames read from the shared channel, per stream, oldest first. A drop-oldest (live)
    stream keeps only its newest ``keep`` frames: the older ones are released unclassified and
    counted, so a camera's labels stay fresh when the classifier falls behind."""

    def __init__(self, pools: dict[int, SlotPool], drop_oldest: frozenset[int], keep: int) -> None:
        self.pools, self.drop_oldest, self.keep = pools, drop_oldest, keep
        self.frames: dict[int, deque[FrameRecord]] = {s: deque() for s in pools}
        self.dropped: dict[int, int] = {s: 0 for s in pools}
        self.size = 0

    def add(self, rec: FrameRecord) -> None:
        q = self.frames[rec.stream]
        q.append(rec)
        self.size += 1
        if rec.stream in self.drop_oldest:
            while len(q) > self.keep:
                old = q.popleft()
                self.pools[old.stream].release(old.slot)
                self.dropped[old.stream] += 1
                self.size -= 1

    def take(self, n: int) -> list[FrameRecord]:
        """Up to ``n`` frames, oldest first across streams (by decode time)."""
        out: list[FrameRecord] = []
        while self.size and len(out) < n:
            stream = min((s for s, q in self.frames.items() if q), key=lambda s: self.frames[s][0].t_decoded)
            out.append(self.frames[stream].popleft())
            self.size -= 1
        return out

    def pending(self, stream: int) -> bool:
        return bool(self.frames[stream])


def run_batch(stage: BatchStage, spec: StageSpec, ctrl: Control, rep: _Reporter) -> None:
    """Gather batches across streams and keep the engine's requests busy: a batch is submitted
    as soon as it is gathered and collected when done, oldest first; its slots are released
    and its results sent on then. A stream's end is sent on once every batch submitted before
    it has been collected. Busy time is the wall time with at least one batch in flight."""
    channel, pools = spec.inbox
    out = spec.outbox
    open_streams = set(pools)
    max_batch = int(getattr(stage, "max_batch", spec.max_batch))
    backlog = _Backlog(pools, spec.drop_oldest, max(2, max_batch))
    rep.extra["stale_dropped"] = backlog.dropped  # per stream index (pipeline.metrics.stream_dropped)
    ends: deque[tuple[EndOfStream, int]] = deque()  # (end, batches submitted before it)
    waiting_ends: list[EndOfStream] = []  # ends read while their stream still has frames in the backlog
    submitted = collected = 0
    busy_since: Optional[float] = None

    def finish(block: bool) -> None:
        nonlocal busy_since, collected
        for records, results in stage.collect(block):
            for r in records:
                pools[r.stream].release(r.slot)
            out.put(results)
            collected += 1
            rep.counters.items += len(records)
        if busy_since is not None and not stage.pending:
            rep.counters.busy_s += time.monotonic() - busy_since
            busy_since = None
        while ends and ends[0][1] <= collected:
            out.put(ends.popleft()[0])

    def read(timeout: float) -> None:
        """Move what the channel holds into the backlog, waiting up to ``timeout`` for the first."""
        first = True
        while True:
            msg = _get(channel, timeout if first else 0.0)
            first = False
            if msg is None:
                return
            if isinstance(msg, EndOfStream):
                waiting_ends.append(msg)
                open_streams.discard(msg.stream)
            else:
                backlog.add(msg)

    while (open_streams or backlog.size or waiting_ends) and not ctrl.stop.is_set():
        finish(stage.full)
        # with batches in flight, look for input often so that finished ones go out promptly
        read(0.002 if (stage.pending or backlog.size) else POLL_S)
        if backlog.size and backlog.size < max_batch and open_streams:
            deadline = time.monotonic() + spec.max_wait_s
            # wait at most max_wait for a fuller batch: a stalled stream never holds the others back
            while backlog.size < max_batch and open_streams and time.monotonic() < deadline:
                read(max(0.0, deadline - time.monotonic()))
        batch = backlog.take(max_batch)
        if batch:
            if stage.full:
                finish(True)
            if busy_since is None:
                busy_since = time.monotonic()
            stage.submit([pools[r.stream].view(r.slot) for r in batch], batch)
            submitted += 1
        for eos in [e for e in waiting_ends if not backlog.pending(e.stream)]:
            waiting_ends.remove(eos)
            ends.append((eos, submitted))
        finish(False)
        rep.tick()
    if not ctrl.stop.is_set():
        while stage.pending:
            finish(True)
        finish(False)


def run_sink(stage: Sink, spec: StageSpec, ctrl: Control, rep: _Reporter) -> None:
    open_streams = set(range(spec.n_streams))
    frames = DisplayMatcher(spec.display, ctrl.stop) if spec.display else None
    while open_streams:
        stopping = ctrl.stop.is_set()
        # on stop, write what is already classified before leaving: results are never lost
        msg = _get(spec.inbox, 0.0 if stopping else POLL_S)
        if msg is None:
            if stopping:
                return
            rep.tick()
            continue
        t0 = time.monotonic()
        if isinstance(msg, EndOfStream):
            stage.end(msg)
            if frames:
                frames.end(msg.stream)
            open_streams.discard(msg.stream)
        else:
            for result in msg:
                if frames:  # a sink fed with display frames takes (result, frame or None)
                    stage.write_frame(result, frames.frame_for(result.frame.stream, result.frame.seq))
                else:
                    stage.write(result)
            rep.counters.items += len(msg)
        rep.counters.busy_s += time.monotonic() - t0
        rep.tick()


LOOPS = {"source": run_source, "batch": run_batch, "sink": run_sink}


def _setup_child_logging(ctrl: Control) -> None:
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(ctrl.logs)]
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


def _attach_all(spec: StageSpec) -> list[SlotPool]:
    pools: list[SlotPool] = []
    for port in (spec.inbox, spec.outbox, *display_links(spec.display)):
        if isinstance(port, Link):
            pools.append(port.pool.attach())
        elif isinstance(port, tuple):
            pools.extend(p.attach() for p in port[1].values())
    return pools


_ANNOUNCE: Optional[tuple[Any, str]] = None  # (event queue, stage title) inside a stage process


def announce_slow_step(seconds: float, what: str) -> None:
    """Tell the supervisor that a one-time setup step (int8 quantisation on a cold cache) may
    take up to ``seconds``: it then waits that long for this stage to be ready instead of its
    usual limit. Outside a stage process (bench, tests) this does nothing."""
    if _ANNOUNCE is not None:
        events, title = _ANNOUNCE
        events.put(Event("slow_step", title, {"seconds": float(seconds), "what": what}))


def child_main(spec: StageSpec, ctrl: Control) -> None:
    """Entry point of every stage process."""
    # the supervisor owns SIGINT/SIGTERM handling and tells children through the events
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the supervisor stops the run
    _die_with_parent()
    # Stages share few cores. Spinning OpenMP workers (the default) then stall each other:
    # measured here, 2 inference threads beside a busy decoder ran 10-15x slower than with
    # passive waits. Must be set before torch/oneDNN load; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _set_title(spec.title)
    _setup_child_logging(ctrl)
    global _ANNOUNCE
    _ANNOUNCE = (ctrl.events, spec.title)
    stage = None
    pools: list[SlotPool] = []
    code = 0
    try:
        pools = _attach_all(spec)
        stage = build_stage(spec.kind, spec.config)
        stage.setup()
        rep = _Reporter(spec, ctrl, stage)
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
        for p in pools:
            p.close()
    sys.exit(code)
