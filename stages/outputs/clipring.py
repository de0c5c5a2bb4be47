"""One camera's recent compressed packets, kept back to a keyframe far enough in the past.

The ring holds one connection's packets in decode order, always starting at a keyframe (a
clip can only start at one). After each batch it drops whole GOPs from its front while the
next keyframe is still at least ``keep_s`` older than the newest packet, so a clip asked for
``pre_s`` <= ``keep_s`` before any packet in the ring can start at or before that moment.
Times are the camera's pts in seconds (dts where a packet has no pts); the decoder's
``offset`` maps them to the stream time the rest of the pipeline uses (an event's ``start_pts``).
A camera whose clock steps back within a connection (a looping server, every loop) is
continued as the decoder's ``StreamTime`` does it: the ring shifts the packets after the step
to follow the one before, so a clip across the step plays on (``camera_time`` maps back).
"""
from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Optional

from videoclf.core.packets import ClipParams, Packet, Packets

BACKWARDS_S = 1.0  # a camera clock that steps back more than this (within a connection) is re-anchored
MAX_EXTRA_S = 120.0  # a ring that cannot trim (no keyframe in this long past keep_s: a broken camera) starts again
STEP_S = 0.04  # a re-anchored packet follows the one before it by a frame (this, when the rate is unknown)


def packet_time(p: Packet, params: ClipParams) -> Optional[float]:
    ts = p.pts if p.pts is not None else p.dts
    return None if ts is None else float(ts * params.time_base)


class PacketRing:
    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.params: Optional[ClipParams] = None
        self.offset = 0.0  # stream time minus camera time (the decoder's, as of the newest batch)
        self.items: deque[tuple[float, Packet]] = deque()
        self.restarts = 0  # rings started again (a new connection, packets lost)
        self.shift = 0  # time-base units added to every pts and dts since the camera's clock last stepped back
        self.shifts = [0]  # every shift of this connection, newest last (an event may be of a frame before a step)

    def reset(self, params: ClipParams) -> None:
        """A new connection: its packets replace the old ones (another codec, size, clock)."""
        self.params = params
        self.shift, self.shifts = 0, [0]
        self._restart()

    def _restart(self) -> None:
        if self.items:
            self.restarts += 1
        self.items.clear()

    def add(self, batch: Packets) -> list[tuple[float, Packet]]:
        """File ``batch``; returns the (time, packet) pairs it added (what a recording clip takes)."""
        if self.params is None or batch.connection != self.params.connection:
            return []  # packets of a connection whose parameters never came: no clip can use them
        if batch.lost:
            self._restart()
        self.offset = batch.offset
        added = []
        tb = self.params.time_base
        for p in batch.packets:
            if self.shift:
                p = replace(p, pts=None if p.pts is None else p.pts + self.shift,
                            dts=None if p.dts is None else p.dts + self.shift)
            t = packet_time(p, self.params)
            if t is None:
                continue
            if self.items and t < self.items[-1][0] - BACKWARDS_S:  # the camera's clock stepped back
                frame = 1 / self.params.rate if self.params.rate else STEP_S
                step = round((self.items[-1][0] + frame - t) / tb)
                self.shift += step
                self.shifts.append(self.shift)
                p = replace(p, pts=None if p.pts is None else p.pts + step, dts=None if p.dts is None else p.dts + step)
                t = packet_time(p, self.params)
            if not self.items and not p.key:
                continue  # a clip starts at a keyframe: wait for one
            self.items.append((t, p))
            added.append((t, p))
        self._trim()
        return added

    def _trim(self) -> None:
        if not self.items:
            return
        newest = max(t for t, _ in list(self.items)[-8:])  # B-frames: the newest pts is among the last few
        if newest - self.items[0][0] > self.keep_s + MAX_EXTRA_S and self._next_key(1) is None:
            self._restart()  # bounded memory: it starts again at the next keyframe
            return
        while True:
            nxt = self._next_key(1)
            if nxt is None or self.items[nxt][0] > newest - self.keep_s:
                return
            for _ in range(nxt):
                self.items.popleft()

    def _next_key(self, start: int) -> Optional[int]:
        for i in range(start, len(self.items)):
            if self.items[i][1].key:
                return i
        return None

    def since(self, t: float) -> list[tuple[float, Packet]]:
        """The packets from the last keyframe at or before camera time ``t`` (the first keyframe
        held when the ring does not reach that far back) to the newest."""
        start = None
        for i, (pt, p) in enumerate(self.items):
            if not p.key:
                continue
            if start is not None and pt > t:
                break
            start = i
        return [] if start is None else list(self.items)[start:]

    def camera_time(self, stream_t: float) -> float:
        """The ring's time of stream time ``stream_t``: with the newest shift, unless that puts it
        past the newest packet (a frame from before the camera's last clock step, whose event came
        after the step's packets): then with the shift before."""
        tb = self.params.time_base if self.params is not None else 0
        newest = self.items[-1][0] if self.items else float("inf")
        for shift in reversed(self.shifts):
            t = stream_t - self.offset + float(shift * tb)
            if t <= newest + BACKWARDS_S:
                return t
        return stream_t - self.offset + float(self.shift * tb)

    @property
    def span_s(self) -> float:
        return self.items[-1][0] - self.items[0][0] if self.items else 0.0
