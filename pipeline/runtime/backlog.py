"""The classifier's backlog: frames read from the decoders, per stream, until a batch takes them."""
from __future__ import annotations

from collections import deque
from typing import Callable, Mapping, Optional

from videoclf.core.records import FrameRecord
from videoclf.ipc.shm import SlotPool


class Backlog:
    """Frames read from the producers, per stream, oldest first, each with the pool its slot
    is in. A drop-oldest (live) stream keeps the frames decoded within its queue time
    (``drop_oldest[stream]`` seconds) of its newest one, at least ``keep`` (a batch) and at
    most half its pool's slots (the rest are in flight or being written): older ones are
    released unclassified and counted, so a camera's labels stay fresh when the classifier
    falls behind, while a short stall (a burst of key frames, another process taking the
    cores) is absorbed instead of costing frames."""

    def __init__(self, n_streams: int, drop_oldest: Mapping[int, float], keep: int,
                 release: Callable[[SlotPool, int], None], zones: Optional[Mapping[int, int]] = None) -> None:
        self.drop_oldest, self.keep, self.release = dict(drop_oldest), keep, release
        self.zones = dict(zones or {})  # stream -> its zones: a frame of it is that many engine inputs
        self.frames: dict[int, deque[tuple[FrameRecord, SlotPool]]] = {s: deque() for s in range(n_streams)}
        self.dropped: dict[int, int] = {s: 0 for s in range(n_streams)}
        self.size = 0

    def add_stream(self, stream: int, drop_oldest_s: Optional[float]) -> None:
        """A stream added to the run, or changed (its policy may be another)."""
        self.frames.setdefault(stream, deque())
        self.dropped.setdefault(stream, 0)
        if drop_oldest_s is None:
            self.drop_oldest.pop(stream, None)
        else:
            self.drop_oldest[stream] = drop_oldest_s

    def add(self, rec: FrameRecord, pool: SlotPool) -> None:
        q = self.frames.setdefault(rec.stream, deque())
        self.dropped.setdefault(rec.stream, 0)
        q.append((rec, pool))
        self.size += 1
        if rec.stream in self.drop_oldest:
            wait_s, cap = self.drop_oldest[rec.stream], max(self.keep, pool.spec.slots // 2)
            while len(q) > self.keep and (len(q) > cap or rec.t_decoded - q[0][0].t_decoded > wait_s):
                old, old_pool = q.popleft()
                self.release(old_pool, old.slot)
                self.dropped[old.stream] += 1
                self.size -= 1

    def take(self, n: int) -> list[tuple[FrameRecord, SlotPool]]:
        """Frames of up to ``n`` engine inputs (a frame with zones counts one per zone; at least
        one frame), oldest first across streams (by decode time)."""
        out: list[tuple[FrameRecord, SlotPool]] = []
        images = 0
        while self.size and images < n:
            stream = min((s for s, q in self.frames.items() if q), key=lambda s: self.frames[s][0][0].t_decoded)
            weight = self.zones.get(stream, 1)
            if out and images + weight > n:
                break
            out.append(self.frames[stream].popleft())
            images += weight
            self.size -= 1
        return out

    def pending(self, stream: int) -> bool:
        return bool(self.frames.get(stream))
