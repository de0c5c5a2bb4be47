"""One file decoded on several cores, a GOP per thread.

FFmpeg's frame threads make every thread wait for the rows of the frames it references, so
when another process takes a core from one of them, the others stall; beside a busy engine a
1080p H.264 frame then costs about 1.3x the CPU of one thread. A closed GOP (one that starts
at a keyframe and references nothing before it) decodes alone, so here each thread opens the
file itself and decodes every k-th GOP on one FFmpeg thread, and the frames are handed over
in file order. Nothing waits for another thread except the hand-over, whose queues hold about
a GOP per thread.

A GOP is open when a picture after its keyframe in decode order is shown before it (a
leading picture, which references the GOP before). Files whose first GOPs are open, or that
have one keyframe only, keep FFmpeg's frame threads (``gop_length``). An open GOP met later
is noticed at its first packets; from there the file is decoded in order, starting at the
keyframe before, and no frame is lost or repeated.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Iterator, Optional

import av

log = logging.getLogger(__name__)

PROBE_PACKETS = 1000  # keyframes further apart than this: one GOP is all there is to share
PROBE_GOPS = 3
MAX_QUEUE = 150  # frames a thread may decode ahead (crop x crop RGB: ~150 KB each at 224) ...
MAX_QUEUE_BYTES = 32 << 20  # ... and bytes (display frames for an annotated video are far larger)
MAX_THREADS = 8  # each thread holds a decoder and a queue; 8 decode 1080p H.264 far faster than 30 FPS

Opener = Callable[[], tuple[Any, Any]]
Convert = Callable[[Any], Any]


def gop_length(container: Any, stream: Any) -> Optional[int]:
    """The longest keyframe interval among the file's first GOPs, in packets, when each of
    them can be decoded alone; None when one cannot, or when there is only one keyframe in
    the first ``PROBE_PACKETS``. Reads packets only (no decoding) and leaves ``container``
    at its start."""
    keys: list[int] = []
    key_pts: Optional[int] = None
    n = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return None
            if packet.is_keyframe:
                if len(keys) == PROBE_GOPS:
                    keys.append(n)
                    break
                keys.append(n)
                key_pts = packet.pts
            elif key_pts is None or packet.pts < key_pts:
                return None  # starts without a keyframe, or a leading picture
            n += 1
            if n >= PROBE_PACKETS:
                break
    except av.FFmpegError:
        return None
    finally:
        container.seek(0)
    if len(keys) < 2:
        return None
    return max(b - a for a, b in zip(keys, keys[1:]))


def read_packets(container: Any, stream: Any, damage: Callable[[Exception], None]) -> Iterator[Any]:
    packets = container.demux(stream)
    while True:
        try:
            yield next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:  # truncated container: nothing more can be read
            damage(exc)
            return


def decoded_frames(container: Any, stream: Any, damage: Callable[[Exception], None]) -> Iterator[Any]:
    """The stream's frames in order; packets that do not decode are skipped and passed to
    ``damage``, and a container that can no longer be read ends the frames."""
    for packet in read_packets(container, stream, damage):
        try:
            decoded = packet.decode()
        except av.FFmpegError as exc:
            damage(exc)
            continue
        yield from decoded


def _timed(frames: Any, stream: Any) -> Iterator[Any]:
    for f in frames:
        if f.time_base is None:  # frames drained at a GOP's end carry no time base
            f.time_base = stream.time_base
        yield f


class _Worker(threading.Thread):
    """Decodes GOPs ``index``, ``index + count``, ... of the file on one FFmpeg thread. Queues
    ("start", gop, keyframe pts), then ("frame", converted, pts) for each frame and ("end",)
    after each GOP; ("open", gop) for a GOP that cannot be decoded alone (and stops there);
    finally ("eof",) or ("fail", exception). Packets that do not decode are skipped and
    passed to ``damage``."""

    def __init__(self, open_video: Opener, index: int, count: int, convert: Convert, depth: int,
                 stop: threading.Event, damage: Callable[[Exception], None]) -> None:
        super().__init__(name=f"gop-decode-{index}", daemon=True)
        self.open_video, self.index, self.count, self.convert = open_video, index, count, convert
        self.q: queue.Queue = queue.Queue(depth)
        self.stop, self.damage = stop, damage
        self.stream: Any = None

    def _put(self, item: tuple) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _emit(self, frames: Any) -> bool:
        return all(self._put(("frame", self.convert(f), f.pts)) for f in _timed(frames, self.stream))

    def _decode(self, packet: Any) -> bool:
        try:
            decoded = packet.decode()
        except av.FFmpegError as exc:
            self.damage(exc)
            return True
        return self._emit(decoded)

    def _finish(self, gop: int, pending: Any, started: bool) -> bool:
        """End this thread's current GOP; a keyframe still pending is a GOP of one frame."""
        if pending is not None:
            if not (self._put(("start", gop, pending.pts)) and self._decode(pending)):
                return False
            started = True
        if not started:
            return True
        cc = self.stream.codec_context
        try:
            drained = cc.decode(None)  # frames the decoder still holds (B-frame reordering)
        except (av.FFmpegError, EOFError) as exc:
            self.damage(exc)
            drained = []
        if not self._emit(drained):
            return False
        cc.flush_buffers()  # ready for the next keyframe
        return self._put(("end",))

    def _gops(self, packets: Iterator[Any]) -> bool:
        """Decode this thread's GOPs; False when it stopped early (asked to, or an open GOP)."""
        gop, mine, started = -1, False, False
        pending: Any = None  # this GOP's keyframe, held until its next packet shows whether the GOP is open
        key_pts: Optional[int] = 0
        for packet in packets:
            if self.stop.is_set():
                return False
            if packet.size == 0:  # the demuxer's end marker; each GOP is drained on its own
                continue
            if packet.is_keyframe:
                if mine and not self._finish(gop, pending, started):
                    return False
                gop += 1
                mine, started = gop % self.count == self.index, False
                pending = packet if mine else None
                continue
            if not mine:
                continue
            if pending is not None:
                key_pts = pending.pts
                if key_pts is None or packet.pts is None or packet.pts < key_pts:
                    self._put(("open", gop))
                    return False
                if not (self._put(("start", gop, key_pts)) and self._decode(pending)):
                    return False
                pending, started = None, True
            elif key_pts is None or packet.pts is None or packet.pts < key_pts:
                self._put(("open", gop))  # a leading picture further in
                return False
            if not self._decode(packet):
                return False
        return not mine or self._finish(gop, pending, started)

    def run(self) -> None:
        container = None
        try:
            container, self.stream = self.open_video()
            cc = self.stream.codec_context
            cc.thread_type = "NONE"
            cc.thread_count = 1
            if self._gops(read_packets(container, self.stream, self.damage)):
                self._put(("eof",))
        except Exception as exc:  # handed to the stage's thread, which raises it there
            self._put(("fail", exc))
        finally:
            if container is not None:
                container.close()


def queue_depth(gop_length: int, frame_bytes: int) -> int:
    """Hand-over messages a thread may queue: about two of its GOPs (a frame each, plus a start
    and an end), so it decodes on while the other threads' GOPs are handed over; fewer when
    that would hold more than MAX_QUEUE_BYTES of frames (then a thread that runs ahead waits
    sooner, and the decoding is still in order)."""
    want = max(16, 2 * (gop_length + 2))
    return max(4, min(MAX_QUEUE, want, MAX_QUEUE_BYTES // max(1, frame_bytes)))


def decode_by_gop(open_video: Opener, count: int, convert: Callable[[], Convert], gop_length: int,
                  frame_bytes: int, damage: Callable[[Exception], None]) -> Iterator[Any]:
    """Every frame of the file, in file order: ``convert(frame)`` for each, decoded by
    ``count`` threads (the caller keeps it to MAX_THREADS) a GOP each in turn. ``convert()``
    makes each thread's converter, whose results take about ``frame_bytes`` each;
    ``damage(exc)`` is called (from any thread) for each packet that does not decode."""
    stop = threading.Event()
    depth = queue_depth(gop_length, frame_bytes)
    workers = [_Worker(open_video, i, count, convert(), depth, stop, damage) for i in range(count)]
    for w in workers:
        w.start()
    handed: dict[int, tuple[Optional[int], set[int]]] = {}  # the last two GOPs: keyframe pts, pts handed over
    gop, open_at = 0, None
    try:
        while open_at is None:
            w = workers[gop % count]
            while True:
                item = w.q.get()
                kind = item[0]
                if kind == "frame":
                    handed[gop][1].add(item[2])
                    yield item[1]
                elif kind == "start":
                    handed[gop] = (item[2], set())
                    handed.pop(gop - 2, None)
                elif kind == "end":
                    break
                elif kind == "open":
                    open_at = gop
                    break
                elif kind == "eof":
                    return
                else:
                    raise item[1]
            gop += 1
    finally:
        stop.set()
        for w in workers:
            while w.is_alive():
                try:
                    w.q.get(timeout=0.05)
                except queue.Empty:
                    pass
            w.join()
    # an open GOP: decode in order from the keyframe before it, skipping what was handed over
    log.info("open GOP %d: decoding in order from here", open_at)
    key, before = handed.get(open_at - 1, (None, set()))
    _, within = handed.get(open_at, (None, set()))
    yield from _in_order(open_video, count, convert(), key, before | within, damage)


def _in_order(open_video: Opener, threads: int, convert: Convert, from_pts: Optional[int], skip: set[int],
              damage: Callable[[Exception], None]) -> Iterator[Any]:
    container, stream = open_video()
    try:
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        if from_pts is not None:
            container.seek(from_pts, stream=stream)  # the keyframe at from_pts
        for f in decoded_frames(container, stream, damage):
            if f.pts is not None and (f.pts in skip or from_pts is not None and f.pts < from_pts):
                continue
            yield convert(f)
    finally:
        container.close()
