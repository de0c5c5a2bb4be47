"""The display path: full (or preview-size) YUV420 frames from a decoder to the sink.

Only built when an output needs pixels (annotated video, alerts, web view). Each stream has
its own pool and its own connection to the sink. In ``every_frame`` mode (annotated video) the decoder writes every
frame and the sink pairs it with the classify Result of the same (stream, seq); in preview
mode the decoder writes a small frame a few times per second and never waits for a slot.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from videoclf.core.records import DisplayGeom, FrameRecord
from videoclf.ipc.shm import SlotPool

log = logging.getLogger(__name__)

WAIT_S = 2.0  # longest wait for a frame the decoder must already have sent (lossless, video on)


@dataclass(frozen=True)
class DisplayPort:
    port: Any  # videoclf.core.contract.Port: this stream's pool of YUV slots + the sink's inbox
    geom: DisplayGeom

    def lossless(self, source_lossless: bool) -> bool:
        """A file's annotated video waits for a slot (every frame is in the video); a camera's
        video and every preview drop the frame at hand when no slot is free (drop newest)."""
        return self.geom.every_frame and source_lossless


def slots_needed(ring_slots: int, model_slots: int, max_batch: int, every_frame: bool) -> int:
    # every frame in flight between decoder and sink holds a display slot; with fewer the
    # decoder only waits (no deadlock), with these it never waits on the display path
    return ring_slots + model_slots + max_batch + 4 if every_frame else 4


Held = tuple[FrameRecord, Any]  # a display frame's record and the pool its slot is in


class DisplayMatcher:
    """Sink side: pairs Results with display frames by (stream, seq).

    Frames with seq < N are released when the Result for N arrives (a live drop-oldest
    decoder dropped them); the newest frame of each stream is kept as the stream's
    ``latest`` (web view, alert snapshots) until a newer one replaces it. A restarted
    decoder writes into a new pool: each held frame keeps the pool it came in."""

    def __init__(self, geoms: dict[int, DisplayGeom]) -> None:
        self.geoms = geoms
        self.pool_of: dict[int, Any] = {}  # peer → the pool that decoder writes
        self.held: dict[int, dict[int, Held]] = {s: {} for s in geoms}
        self.latest: dict[int, Optional[Held]] = {s: None for s in geoms}
        self.missing = 0  # Results whose frame was dropped before reaching the sink

    def add_stream(self, stream: int, geom: DisplayGeom) -> None:
        """A stream added (or changed) while the run goes on."""
        self.geoms[stream] = geom
        self.held.setdefault(stream, {})
        self.latest.setdefault(stream, None)

    def joined(self, peer: int, hello: Any) -> None:
        try:
            self.pool_of[peer] = SlotPool(hello.pool).attach()
        except Exception as exc:  # noqa: BLE001 (its decoder died at once: frames of it are missing)
            log.warning("display frames of stream %d: %s", hello.stream, exc)

    def lost(self, peer: int) -> None:
        self.pool_of.pop(peer, None)  # frames held from it stay mapped until released

    def add(self, peer: int, rec: FrameRecord) -> None:
        pool = self.pool_of.get(peer)
        if pool is not None and rec.stream in self.held:
            self.held[rec.stream][rec.seq] = (rec, pool)

    def frame_for(self, stream: int, seq: int, pump: Callable[[float], None], stop: Any) -> Optional[np.ndarray]:
        """The display frame for (stream, seq): exact in every-frame mode, else the newest ≤ seq.
        ``pump(timeout)`` reads the sink's inbox while the frame is awaited."""
        geom = self.geoms.get(stream)
        if geom is None:
            return None
        held, cur = self.held[stream], self.latest[stream]
        if cur is not None and cur[0].seq == seq:  # asked again: the stream's next zone of the same frame
            return cur[1].view(cur[0].slot)
        if geom.every_frame and seq not in held and not any(s > seq for s in held):
            # it was sent before its Result, on another connection: bounded wait for it
            deadline = time.monotonic() + (0.05 if stop.is_set() else WAIT_S)
            while time.monotonic() < deadline and seq not in held and not any(s > seq for s in held):
                pump(0.02)
        ready = sorted(s for s in held if s <= seq)
        if ready:
            for s in ready[:-1]:  # older than this Result: the decoder dropped their Results
                rec, pool = held.pop(s)
                pool.release(rec.slot)
            self._replace_latest(stream, held.pop(ready[-1]))
        cur = self.latest[stream]
        if geom.every_frame and (cur is None or cur[0].seq != seq):
            self.missing += 1
            return None
        return None if cur is None else cur[1].view(cur[0].slot)

    def _replace_latest(self, stream: int, new: Held) -> None:
        old = self.latest[stream]
        if old is not None and (old[0].slot, old[1]) != (new[0].slot, new[1]):
            old[1].release(old[0].slot)
        self.latest[stream] = new

    def latest_view(self, stream: int) -> Optional[np.ndarray]:
        cur = self.latest.get(stream)
        return None if cur is None else cur[1].view(cur[0].slot)

    def end(self, stream: int) -> None:
        """The stream ended: give every held slot back."""
        if stream not in self.held:
            return
        for rec, pool in self.held[stream].values():
            pool.release(rec.slot)
        self.held[stream].clear()
        cur = self.latest[stream]
        if cur is not None:
            cur[1].release(cur[0].slot)
            self.latest[stream] = None


def send_display(out: Any, port: DisplayPort, frame: np.ndarray, rec: FrameRecord, source_lossless: bool) -> int:
    """Decoder side (``out``: its ``videoclf.ipc.links.Producer`` to the sink): copy ``frame`` into a
    display slot and announce it before its model frame, so the sink never waits long for it.
    Returns the frames dropped (0 or 1; a skipped preview is no drop)."""
    slot = out.acquire(port.lossless(source_lossless), 0.0)
    if slot is not None:
        np.copyto(out.pool.view(slot), frame)
        if out.send(slot, FrameRecord(rec.stream, rec.seq, slot, rec.pts, rec.time, rec.t_decoded, rec.decode_ms)):
            return 0
    return int(port.geom.every_frame)
