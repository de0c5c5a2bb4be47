"""The display path: full (or preview-size) YUV420 frames from a decoder to the sink.

Only built when an output needs pixels (annotated video, alerts, web view). Each stream has
its own pool and channel. In ``every_frame`` mode (annotated video) the decoder writes every
frame and the sink pairs it with the classify Result of the same (stream, seq); in preview
mode the decoder writes a small frame a few times per second and never waits for a slot.
"""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from pipeline.messages import FrameRecord

WAIT_S = 2.0  # longest wait for a frame the decoder must already have sent (lossless, video on)


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


@dataclass(frozen=True)
class DisplayPort:
    link: Any  # pipeline.stage.Link: pool of YUV slots + this stream's channel
    geom: DisplayGeom


def slots_needed(ring_slots: int, model_slots: int, max_batch: int, every_frame: bool) -> int:
    # every frame in flight between decoder and sink holds a display slot; with fewer the
    # decoder only waits (no deadlock), with these it never waits on the display path
    return ring_slots + model_slots + max_batch + 4 if every_frame else 4


class DisplayMatcher:
    """Sink side: pairs Results with display frames by (stream, seq).

    Frames with seq < N are released when the Result for N arrives (a live drop-oldest
    decoder dropped them); the newest frame of each stream is kept as the stream's
    ``latest`` (web view, alert snapshots) until a newer one replaces it."""

    def __init__(self, ports: dict[int, DisplayPort], stop: Any) -> None:
        self.ports = ports
        self.stop = stop
        self.held: dict[int, dict[int, FrameRecord]] = {s: {} for s in ports}
        self.latest: dict[int, Optional[FrameRecord]] = {s: None for s in ports}
        self.missing = 0  # Results whose frame was dropped before reaching the sink

    def _pull(self, stream: int, timeout: float) -> bool:
        try:
            rec = self.ports[stream].link.channel.get(timeout=timeout) if timeout > 0 else \
                self.ports[stream].link.channel.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return False
        self.held[stream][rec.seq] = rec
        return True

    def frame_for(self, stream: int, seq: int) -> Optional[np.ndarray]:
        """The display frame for (stream, seq): exact in every-frame mode, else the newest ≤ seq."""
        port = self.ports.get(stream)
        if port is None:
            return None
        held = self.held[stream]
        while self._pull(stream, 0):
            pass
        if port.geom.every_frame and seq not in held and not any(s > seq for s in held):
            # it was sent before its Result, on another queue: bounded wait for it
            deadline = time.monotonic() + (0.05 if self.stop.is_set() else WAIT_S)
            while time.monotonic() < deadline and seq not in held and not any(s > seq for s in held):
                self._pull(stream, 0.02)
        ready = sorted(s for s in held if s <= seq)
        if ready:
            for s in ready[:-1]:  # older than this Result: the decoder dropped their Results
                port.link.pool.release(held.pop(s).slot)
            self._replace_latest(stream, held.pop(ready[-1]))
        cur = self.latest[stream]
        if port.geom.every_frame and (cur is None or cur.seq != seq):
            self.missing += 1
            return None
        return None if cur is None else port.link.pool.view(cur.slot)

    def _replace_latest(self, stream: int, rec: FrameRecord) -> None:
        old = self.latest[stream]
        if old is not None and old.slot != rec.slot:
            self.ports[stream].link.pool.release(old.slot)
        self.latest[stream] = rec

    def latest_view(self, stream: int) -> Optional[np.ndarray]:
        rec = self.latest.get(stream)
        return None if rec is None else self.ports[stream].link.pool.view(rec.slot)

    def end(self, stream: int) -> None:
        """The stream ended: give every held slot back."""
        port = self.ports.get(stream)
        if port is None:
            return
        while self._pull(stream, 0):
            pass
        for rec in self.held[stream].values():
            port.link.pool.release(rec.slot)
        self.held[stream].clear()
        if self.latest[stream] is not None:
            port.link.pool.release(self.latest[stream].slot)
            self.latest[stream] = None



def _acquire(port: DisplayPort, lossless: bool, stop: Any) -> tuple[Optional[int], int]:
    """A free display slot: lossless waits (bounded steps, checking stop); otherwise the
    oldest unsent frame of this stream is reclaimed, and previews are simply skipped."""
    pool, channel = port.link.pool, port.link.channel
    if not port.geom.every_frame:
        return pool.acquire(0), 0
    while not stop.is_set():
        slot = pool.acquire(0.1 if lossless else 0)
        if slot is not None:
            return slot, 0
        if not lossless:
            try:
                return channel.get_nowait().slot, 1
            except queue.Empty:
                slot = pool.acquire(0.005)
                if slot is not None:
                    return slot, 0
    return None, 0


def send_display(port: DisplayPort, frame: np.ndarray, rec: FrameRecord, lossless: bool, stop: Any) -> tuple[bool, int]:
    """Decoder side: copy ``frame`` into a display slot and announce it before its model
    frame, so the sink never waits long for it. Returns (sent, frames dropped)."""
    slot, dropped = _acquire(port, lossless, stop)
    if slot is None:
        return False, dropped
    np.copyto(port.link.pool.view(slot), frame)
    port.link.channel.put(FrameRecord(rec.stream, rec.seq, slot, rec.pts, rec.time, rec.t_decoded, rec.decode_ms))
    return True, dropped


def display_links(display: Any) -> list[Any]:
    """The Links of a spec's display port(s), for attaching their pools in the child."""
    if isinstance(display, DisplayPort):
        return [display.link]
    if isinstance(display, dict):
        return [p.link for p in display.values()]
    return []
