"""The loops that drive stages inside their processes, one per role: source, batch, sink.

Each loop owns its ends of the links (``pipeline/ipc/links.py``) and survives the death of the
process at the other end: a decoder waits for (or drops frames until) a new classifier, the
classifier waits for a new sink and replays what it lacks, and the sink drops frames it has
logged already. Every wait is bounded and checks the stop flag.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Iterator, Optional

from videoclf.core.contract import BatchStage, Sink, Source
from videoclf.core.packets import ClipParams, Packets
from videoclf.core.records import Ack, Decoded, EndOfStream, FrameRecord, Resume, StreamPlan
from videoclf.ipc.display import DisplayMatcher
from videoclf.ipc.links import Forward, Inputs
from videoclf.ipc.shm import SlotPool
from videoclf.ipc.transport import Inbox, Joined, Lost
from videoclf.runtime.backlog import Backlog
from videoclf.runtime.feed import Feed
from videoclf.runtime.specs import BatchSpec, Control, SinkSpec, SourceSpec
from videoclf.runtime.tap import Tap
from videoclf.runtime.zones import ZoneMap

if TYPE_CHECKING:  # child imports these loops: a runtime import back would be a cycle
    from videoclf.runtime.child import Reporter

log = logging.getLogger(__name__)

POLL_S = 0.1  # every blocking wait in a loop is bounded by this, then the stop event is checked

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


def _count_passed(counters: Any, d: Decoded, own: int = 1) -> None:  # own: 0 when d is no frame of its own
    counters.decoded += own + d.skipped + d.gated - d.undecoded
    counters.skipped += d.skipped
    counters.gated += d.gated
    counters.undecoded += d.undecoded


def _passed_at_end(stage: Source, counters: Any, seq: int, limit: Optional[int]) -> int:  # rate, gate, keyframes
    skipped, gated, undecoded = getattr(stage, "passed_at_end", lambda: (0, 0, 0))()
    if limit is None or seq + skipped + gated <= limit:
        _count_passed(counters, Decoded(None, None, skipped=skipped, gated=gated, undecoded=undecoded), own=0)
        seq += skipped + gated
    return seq


def run_source(stage: Source, spec: SourceSpec, ctrl: Control, rep: Reporter) -> None:
    feed = Feed(spec, ctrl)
    # after a restart, numbering goes on where the label log stopped; a file is decoded again
    # from the start and frames already classified are skipped, so each is logged once
    seq = 0 if feed.lossless else spec.seq_start
    # a file's max_frames is its first frames; a camera's counts its frames in this run
    limit = None if spec.max_frames is None else spec.max_frames + (0 if feed.lossless else spec.seq_base)
    reason = "end"
    frames = stage.frames()
    discarded = _await_go(frames, ctrl, feed.lossless)
    if ctrl.lean_decode is not None and ctrl.lean_decode.is_set() and hasattr(stage, "lean"):
        stage.lean()  # the lean count its plan carries; a file waited for go, so its codec is not open yet
    if discarded:
        log.info("%s: %d frames discarded while the model loaded", spec.title, discarded)
    rep.counters.started = time.monotonic()  # busy fraction and FPS count from the start of work
    while True:
        if ctrl.stop.is_set() or ctrl.drain.is_set():
            reason = "stopped"
            break
        if limit is not None and seq >= limit:
            reason = "limit"
            break
        t0 = time.monotonic()
        item = next(frames, _END)
        feed.packets(stage)  # event clips: the camera's packets to the sink, before the frame's display
        if item is _END:
            break
        if item is None:  # heartbeat: nothing decoded yet
            rep.tick()
            continue
        d = item if isinstance(item, Decoded) else Decoded(*item)
        passed = d.skipped + d.gated  # frames before this one not classified (rate, gate): each keeps its number
        if feed.lossless and seq + passed < spec.seq_start:
            seq += passed + 1
            continue
        seq += passed
        _count_passed(rep.counters, d)
        if limit is not None and seq >= limit:
            reason = "limit"
            break
        t1 = time.monotonic()
        # a threaded live source hands over when it decoded the frame and how long that took
        dec_ms = d.decode_ms if d.decode_ms is not None else (t1 - t0) * 1000
        rec = FrameRecord(spec.stream, seq, -1, d.pts, time.time(), d.t_decoded or t1, dec_ms)
        sent = feed.hand_over(d, rec)
        if sent is None:
            reason = "stopped"
            break
        if sent:
            rep.counters.items += 1
            rep.counters.busy_s += dec_ms / 1000  # decoding only: waiting for a free slot is not work
        seq += 1
        rep.counters.dropped = feed.all_dropped
        rep.counters.next_seq = seq
        rep.tick()
    getattr(frames, "close", lambda: None)()
    seq = _passed_at_end(stage, rep.counters, seq, limit) if reason == "end" else seq  # the last ones keep numbers
    feed.close(EndOfStream(spec.stream, seq, reason))
    rep.counters.dropped = feed.all_dropped


class _Classify:
    """State of the batch loop: what came in, what is in flight, which ends wait for what."""

    def __init__(self, stage: BatchStage, spec: BatchSpec, rep: Reporter) -> None:
        self.stage, self.spec, self.rep = stage, spec, rep
        self.inbox = Inbox(spec.inbox).open()
        self.n_streams = spec.n_streams  # grows when the supervisor adds a stream (StreamPlan)
        self.fwd = Forward(spec.to, spec.n_streams)
        self.inputs = Inputs()
        self.max_batch = int(getattr(stage, "max_batch", spec.max_batch))
        self.backlog = Backlog(spec.n_streams, spec.drop_oldest, max(2, self.max_batch), self.inputs.release, spec.zones)
        rep.counters.stale_dropped = self.backlog.dropped  # per stream index (videoclf.core.runstats.RunStats.dropped_by)
        self.eos_seen: set[int] = set()  # streams whose end came in
        self.ends: deque[tuple[EndOfStream, int]] = deque()  # (end, batches submitted before it)
        self.waiting_ends: list[EndOfStream] = []  # ends whose stream still has frames in the backlog
        self.in_flight: deque[list[SlotPool]] = deque()  # the pools of each submitted batch's slots
        self.submitted = self.collected = 0
        self.busy_since: Optional[float] = None

    @property
    def done(self) -> bool:
        return len(self.fwd.acked) >= self.n_streams

    def finish(self, block: bool) -> None:
        for records, results in self.stage.collect(block):
            pools = self.in_flight.popleft()
            self.fwd.send(results)  # first: a freed slot means its result is on its way
            for r, pool in zip(records, pools):
                self.inputs.release(pool, r.slot)
            self.collected += 1
            self.rep.counters.items += len(records)
        if self.busy_since is not None and not self.stage.pending:
            self.rep.counters.busy_s += time.monotonic() - self.busy_since
            self.busy_since = None
        while self.ends and self.ends[0][1] <= self.collected:
            self.fwd.send(self.ends.popleft()[0])
        for stream in self.fwd.poll():  # the sink has these ends: their decoders may exit
            peer = self.inputs.peer_of.get(stream)
            if peer is not None:
                self.inbox.reply(peer, Ack(stream))

    def read(self, timeout: float) -> None:
        """Move what the inbox holds into the backlog, waiting up to ``timeout`` for the first."""
        got = self.inbox.get(timeout)
        while got is not None:
            peer, msg = got
            if isinstance(msg, Joined):
                self.inputs.joined(peer, msg.hello)
            elif isinstance(msg, Lost):
                self.inputs.lost(peer)
            elif isinstance(msg, EndOfStream):
                self._end(peer, msg)
            elif isinstance(msg, StreamPlan):
                self._plan(peer, msg)
            elif isinstance(msg, FrameRecord):
                pool = self.inputs.hold(peer)
                if pool is not None:
                    self.backlog.add(msg, pool)
            got = self.inbox.get(0)

    def _plan(self, peer: int, sp: StreamPlan) -> None:
        """A stream added or changed while the run goes on: taken, sent on to the sink ahead of
        its results, acknowledged (the supervisor then starts its decoder)."""
        self.n_streams = max(self.n_streams, sp.stream + 1)
        self.backlog.add_stream(sp.stream, sp.drop_oldest_s)
        self.eos_seen.discard(sp.stream)  # a removed stream's name added again
        self.fwd.add_stream(sp.stream)
        self.fwd.send(sp)
        self.inbox.reply(peer, Ack(sp.stream))

    def _end(self, peer: int, eos: EndOfStream) -> None:
        if eos.stream in self.fwd.acked:  # sent again by a decoder that missed the ack
            self.inbox.reply(peer, Ack(eos.stream))
        elif eos.stream not in self.eos_seen:
            self.eos_seen.add(eos.stream)
            self.waiting_ends.append(eos)

    def step(self, ctrl: Control) -> None:
        spec = self.spec
        self.finish(self.stage.full)
        # with batches in flight, look for input often so that finished ones go out promptly
        self.read(0.002 if (self.stage.pending or self.backlog.size) else POLL_S)
        if self.backlog.size and self.backlog.size < self.max_batch and len(self.eos_seen) < self.n_streams:
            deadline = time.monotonic() + spec.max_wait_s
            # wait at most max_wait for a fuller batch: a stalled stream never holds the others back
            while self.backlog.size < self.max_batch and len(self.eos_seen) < self.n_streams \
                    and time.monotonic() < deadline and not ctrl.stop.is_set():
                self.read(max(0.0, deadline - time.monotonic()))
        batch = self.backlog.take(self.max_batch)
        if batch:
            if self.stage.full:
                self.finish(True)
            if self.busy_since is None:
                self.busy_since = time.monotonic()
            self.in_flight.append([pool for _, pool in batch])
            self.stage.submit([pool.view(r.slot) for r, pool in batch], [r for r, _ in batch])
            self.submitted += 1
        for eos in [e for e in self.waiting_ends if not self.backlog.pending(e.stream)]:
            self.waiting_ends.remove(eos)
            self.ends.append((eos, self.submitted))
        self.finish(False)
        self.rep.counters.results_lost = self.fwd.lost
        self.rep.tick()


def run_batch(stage: BatchStage, spec: BatchSpec, ctrl: Control, rep: Reporter) -> None:
    """Gather batches across streams and keep the engine's requests busy: a batch is submitted as soon as
    it is gathered and collected when done, oldest first; its results are sent on and then its slots
    released. A stream's end is sent on once every batch submitted before it has been collected; the loop
    ends when the sink has every stream's end. Busy time is the wall time with a batch in flight."""
    c = _Classify(stage, spec, rep)
    try:
        while not c.done and not ctrl.stop.is_set():
            c.step(ctrl)
        if not ctrl.stop.is_set():
            while stage.pending:
                c.finish(True)
            c.finish(False)
    finally:
        c.inbox.close()


class _Deliver:
    """State of the sink loop: where each log ends, which streams ended, display frames."""

    def __init__(self, stage: Sink, spec: SinkSpec, ctrl: Control, rep: Reporter) -> None:
        self.stage, self.spec, self.ctrl, self.rep = stage, spec, ctrl, rep
        self.inbox = Inbox(spec.inbox).open()
        self.last = list(spec.last_seq) or [-1] * spec.n_streams  # per logged stream; ended: physical ones
        self.zones, self.n_streams = ZoneMap(spec.zones), len(spec.zones) or spec.n_streams  # grows: StreamPlan
        self.ended = set(spec.ended)
        self.frames = DisplayMatcher(spec.display) if spec.display else None
        self.pending: deque[tuple[int, Any]] = deque()  # messages read while waiting for a display frame
        self.duplicates = 0
        self.tap = Tap(spec.tap) if spec.tap else None

    @property
    def open(self) -> bool:
        return len(self.ended) < self.n_streams

    def next(self, timeout: float) -> Optional[tuple[int, Any]]:
        return self.pending.popleft() if self.pending else self.inbox.get(timeout)

    def pump(self, timeout: float) -> None:
        """While a result waits for its display frame: file display frames, keep the rest."""
        got = self.inbox.get(timeout)
        if got is not None and not self._display(*got):
            self.pending.append(got)

    def _display(self, peer: int, msg: Any) -> bool:
        if self.frames is None:
            return False
        if isinstance(msg, FrameRecord):
            self.frames.add(peer, msg)
            return True
        if isinstance(msg, (Joined, Lost)) and msg.hello.role == "display":
            self.frames.joined(peer, msg.hello) if isinstance(msg, Joined) else self.frames.lost(peer)
            return True
        return False

    def handle(self, peer: int, msg: Any) -> None:
        if self._display(peer, msg):
            return
        if isinstance(msg, Joined) and msg.hello.role == "classify":
            self.inbox.reply(peer, Resume(self.zones.resume(self.last), frozenset(self.ended)))
        elif isinstance(msg, StreamPlan):
            self._plan(msg)
        elif isinstance(msg, (ClipParams, Packets)):  # a camera's packets, for event clips
            getattr(self.stage, "packets", lambda _m: None)(msg)
        elif isinstance(msg, EndOfStream):
            if msg.stream not in self.ended:
                self.zones.end(self.stage, msg)  # each of its zones' logs
                if self.frames:
                    self.frames.end(msg.stream)
                self.ended.add(msg.stream)
            self.inbox.reply(peer, Ack(msg.stream))
        elif isinstance(msg, list):
            t0 = time.monotonic()
            for result in msg:
                p, result = result.frame.stream, self.zones.logged(result)  # p: the physical stream
                s, seq = result.frame.stream, result.frame.seq
                if seq <= self.last[s]:  # sent again after a crash upstream: logged already
                    self.duplicates += 1
                    continue
                frame = self.frames.frame_for(p, seq, self.pump, self.ctrl.stop) if self.frames else None
                result = self.stage.prepare(result)
                if self.tap is not None:  # before the log line: a restarted sink sends it again, never loses it
                    self.tap.send(result)
                self.stage.write(result, frame)
                self.last[s] = seq
                self.rep.counters.items += 1
            self.rep.counters.busy_s += time.monotonic() - t0
            self.rep.counters.duplicates = self.duplicates

    def _plan(self, sp: StreamPlan) -> None:
        """A stream added or changed while the run goes on: its log opens (appending), its
        display frames are matched from now on."""
        self.last.extend([-1] * (sp.stream + 1 - len(self.last)))
        self.last[sp.stream] = max(self.last[sp.stream], sp.last_seq)
        self.n_streams = max(self.n_streams, sp.stream + 1)
        self.ended.discard(sp.stream)
        if self.frames is not None and sp.display is not None:
            self.frames.add_stream(sp.stream, sp.display)
        self.stage.add_stream(sp.stream, sp.sink)


def run_sink(stage: Sink, spec: SinkSpec, ctrl: Control, rep: Reporter) -> None:
    d = _Deliver(stage, spec, ctrl, rep)
    try:
        while d.open:
            stopping = ctrl.stop.is_set()
            # on stop, write what is already classified before leaving: results are never lost
            got = d.next(0.0 if stopping else POLL_S)
            if got is None:
                if stopping:
                    return
                rep.tick()
                continue
            d.handle(*got)
            rep.tick()
    finally:
        d.inbox.close()
        if d.tap is not None:
            d.tap.close()


LOOPS = {"source": run_source, "batch": run_batch, "sink": run_sink}
