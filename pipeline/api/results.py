"""Typed results and how they reach the API's process.

The sink sends each result (no pixels) to an inbox this process owns
(``videoclf.runtime.tap``); a reader thread turns them into frozen ``Result`` objects and
puts them in a bounded queue. When the queue is full the oldest result is dropped and counted,
so a slow consumer never stalls the pipeline. In lossless mode a file's result waits for room
instead (the wait travels back to the sink), while a camera's results are still dropped.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from videoclf.ipc.transport import Inbox, Joined, Lost

DRAIN_S = 5.0  # after the run ends, how long the reader waits for a sink's last results


@dataclass(frozen=True)
class Label:
    """One of a frame's top-k classes."""

    label: str
    index: int  # the class index in the model's label list (-1: not in it)
    probability: float


@dataclass(frozen=True)
class Result:
    """One classified frame, as its label log line says it."""

    stream: str
    frame: int  # 0-based frame number in its stream (the label log's ``frame``)
    pts: Optional[float]  # presentation time, seconds
    time: float  # wall clock (epoch seconds) when the frame was decoded
    top: tuple[Label, ...]  # best first
    # the smoothed top-1 (its probability: the smoothed score), where the stream smooths its labels (`smooth`)
    smoothed: Optional[Label] = None

    @property
    def label(self) -> str:
        """The best class's name."""
        return self.top[0].label


class ResultQueue:
    """Bounded, drop-oldest; ``lossless`` streams wait for room instead (until ``release``)."""

    def __init__(self, size: int, names: Sequence[str]) -> None:
        self.size = max(1, size)
        self._q: deque[tuple[Result, bool]] = deque()
        self._cond = threading.Condition()
        self.dropped = {n: 0 for n in names}
        self.delivered = 0
        self.closed = False  # no more results will be put
        self.released = False  # nobody waits for the rest: lossless puts drop too

    def put(self, r: Result, lossless: bool) -> None:
        with self._cond:
            while len(self._q) >= self.size:
                lossy = next((i for i, (_, keep) in enumerate(self._q) if not keep), None)
                if lossy is None and not self.released:
                    if not lossless:  # only lossless results wait: this one is the oldest that may go
                        self.dropped[r.stream] += 1
                        return
                    self._cond.wait(0.1)
                    continue
                old, _ = self._q[lossy or 0]
                del self._q[lossy or 0]
                self.dropped[old.stream] += 1
            self._q.append((r, lossless))
            self._cond.notify_all()

    def get(self, timeout: Optional[float] = None) -> Optional[Result]:
        """The oldest result; None once closed and empty (or after ``timeout``)."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._q:
                if self.closed:
                    return None
                left = 0.1 if end is None else end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))
            r, _ = self._q.popleft()
            self.delivered += 1
            self._cond.notify_all()
            return r

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self.released = True
            self._cond.notify_all()


class Reader:
    """The thread that reads the tap inbox into the queue, each frame once."""

    def __init__(self, inbox: Inbox, queue: ResultQueue, names: Sequence[str], lossless: Sequence[bool],
                 labels: Callable[[], dict[str, int]]) -> None:
        self.inbox, self.queue, self.names, self.lossless = inbox, queue, list(names), list(lossless)
        self.labels = labels
        self.last = [-1] * len(self.names)
        self.duplicates = 0  # sent again by a restarted sink: dropped here
        self.peers: set[int] = set()
        self.run_over = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="videoclf-results", daemon=True)

    def start(self) -> "Reader":
        self.thread.start()
        return self

    def _loop(self) -> None:
        over_at: Optional[float] = None
        try:
            while True:
                if self.run_over.is_set():
                    over_at = over_at or time.monotonic()
                    # every sink that connected has closed its end: nothing more can come
                    if (not self.peers and self.inbox.empty()) or time.monotonic() - over_at > DRAIN_S:
                        break
                got = self.inbox.get(0.1)
                if got is not None:
                    self._take(*got)
        finally:
            self.inbox.close()
            self.queue.close()

    def _take(self, peer: int, msg: Any) -> None:
        if isinstance(msg, Joined):
            self.peers.add(peer)
        elif isinstance(msg, Lost):
            self.peers.discard(peer)
        elif isinstance(msg, tuple) and len(msg) == 6:
            stream, seq, pts, wall, top, sm = msg
            if seq <= self.last[stream]:
                self.duplicates += 1
                return
            self.last[stream] = seq
            index = self.labels()
            labels = tuple(Label(lbl, index.get(lbl, -1), p) for lbl, p in top)
            smoothed = None if sm is None else Label(sm[0], index.get(sm[0], -1), sm[1])
            self.queue.put(Result(self.names[stream], seq, pts, wall, labels, smoothed), self.lossless[stream])


def label_index(model: Any) -> dict[str, int]:
    """Class name → index, from the labels the classifier uses (videoclf.stages.classify.backbones)."""
    from videoclf.stages.classify.backbones import imagenet_labels, read_labels

    if model.labels:
        names = read_labels(model.labels)
    elif (model.num_classes or 1000) == 1000:
        names = imagenet_labels()
    else:
        names = [f"class_{i}" for i in range(model.num_classes)]
    index: dict[str, int] = {}
    for i, n in enumerate(names):
        index.setdefault(n, i)
    return index
