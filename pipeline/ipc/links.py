"""The two ends of the links that carry frames and results, and what each does when the
process at the other end dies.

- ``Producer``: a decoder's end of a slot link (model frames to the classifier, display
  frames to the sink). It owns the pool. When its consumer dies, the slots come back to it:
  a lossless link keeps their records and sends them again to the next consumer (the sink
  drops any frame it has logged already); any other link frees them, counted as lost.
- ``Forward``: the classifier's end of its link to the sink, with a replay buffer. A sink
  that (re)connects says which frame each label log ends at; what comes after is sent again.
- ``Inputs``: the classifier's side of its producers: which pool each connection writes,
  so that a slot goes back to the right pool even after its producer was replaced.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Optional

from videoclf.core.errors import ResourceError
from videoclf.core.records import Ack, EndOfStream, Hello, Resume
from videoclf.ipc.shm import SlotPool
from videoclf.ipc.transport import Outbox

log = logging.getLogger(__name__)

REPLAY_RESULTS = 4096  # results the classifier keeps for a sink that restarts (~2 min of 30 FPS)


class Producer:
    def __init__(self, port: Any, hello: Hello, resend: bool, stop: Any) -> None:
        self.pool = port.pool.attach()
        self.box = Outbox(port.to, hello)
        self.resend, self.stop = resend, stop
        self.sent: dict[int, Any] = {}  # slot → record, while the consumer may hold it
        self.end: Optional[EndOfStream] = None
        self.acked = False
        self.lost = 0  # frames a dead consumer took with it (links that do not resend)
        self._epoch = 0
        self._had = False

    def poll(self) -> None:
        """Read acks; notice a consumer that died (reclaim) or a new one (resend)."""
        for msg in self.box.replies():
            if isinstance(msg, Ack):
                self.acked = True
        if not self.box.connected:
            if self._had:
                self._had = False
                self._consumer_lost()
            self.box.connect()
        if self.box.connected and self.box.epoch != self._epoch:
            self._epoch, self._had = self.box.epoch, True
            self._send_again()

    def _consumer_lost(self) -> None:
        held = set(self.pool.held())
        for slot in [s for s in self.sent if s not in held]:  # released before it died
            del self.sent[slot]
        if not self.resend:
            self.pool.reclaim(list(self.sent))
            self.lost += len(self.sent)
            self.sent.clear()

    def _send_again(self) -> None:
        for rec in sorted(self.sent.values(), key=lambda r: r.seq):
            self.box.send(rec)  # if this consumer dies too, the next connection sends them again
        if self.end is not None and not self.acked:
            self.box.send(self.end)

    def take(self, timeout: float) -> Optional[int]:
        """A free slot, waiting up to ``timeout``: the consumer frees slots without telling, so
        this polls, and meanwhile notices a consumer that died."""
        end = time.monotonic() + timeout
        pause = 0.0005
        while True:
            self.poll()
            slot = self.pool.take()
            if slot is not None:
                self.sent.pop(slot, None)  # a record of this slot's previous use: long released
                return slot
            if time.monotonic() >= end or self.stop.is_set():
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.004)

    def acquire(self, lossless: bool, wait_s: float) -> Optional[int]:
        """The one acquire of every slot link: lossless waits (in bounded steps, until stop);
        otherwise wait at most ``wait_s`` and let the caller drop the frame it holds."""
        if not lossless:
            return self.take(wait_s)
        slot = None
        while slot is None and not self.stop.is_set():
            slot = self.take(0.1)
        return slot

    def send(self, slot: int, rec: Any) -> bool:
        """Hand ``slot`` over. Without a consumer, a lossless link waits for the next one (until
        stop) and a lossy one gives the frame up (False)."""
        self.sent[slot] = rec
        if self.box.send(rec):
            return True
        if not self.resend:
            del self.sent[slot]
            self.pool.release(slot)
            return False
        while not self.stop.is_set():
            self.poll()  # a new consumer gets every held record, this one included
            if self.box.connected:
                return True
            time.sleep(0.01)
        return False

    def finish(self, eos: EndOfStream, wait: bool) -> None:
        """Send the stream's end; with ``wait``, until the sink has it (a consumer that dies
        meanwhile is sent it again) or stop."""
        self.end = eos
        self.box.send(eos)
        while wait and not self.acked and not self.stop.is_set():
            self.poll()
            time.sleep(0.005)
        self.box.close()


class Forward:
    def __init__(self, addr: str, n_streams: int) -> None:
        self.box = Outbox(addr, Hello("classify"))
        self.buffer: deque[Any] = deque()  # lists of Results and EndOfStreams, oldest first
        self.size = 0  # results in the buffer
        self.evicted = [-1] * n_streams  # per stream, the newest frame that fell out of the buffer
        self.ready = False  # connected and told where the logs end
        self.acked: set[int] = set()
        self.lost = 0  # results a restarted sink never got (fell out of the buffer first)

    def send(self, item: Any) -> None:
        self.buffer.append(item)
        if isinstance(item, list):
            self.size += len(item)
            while self.size > REPLAY_RESULTS and self.buffer:
                old = self.buffer.popleft()
                if isinstance(old, list):
                    self.size -= len(old)
                    for r in old:
                        s = r.frame.stream
                        self.evicted.extend([-1] * (s + 1 - len(self.evicted)))
                        self.evicted[s] = max(self.evicted[s], r.frame.seq)
        if self.ready and not self.box.send(item):
            self.ready = False

    def add_stream(self, stream: int) -> None:
        """A stream added while the run goes on (or a removed one's name added again)."""
        self.evicted.extend([-1] * (stream + 1 - len(self.evicted)))
        self.acked.discard(stream)

    def poll(self) -> list[int]:
        """Streams the sink acknowledged since the last call; connects and replays as needed."""
        acks = []
        for msg in self.box.replies():
            if isinstance(msg, Resume):
                acks += sorted(msg.ended - self.acked)
                self.acked |= msg.ended
                self._replay(msg)
            elif isinstance(msg, Ack):
                self.acked.add(msg.stream)
                acks.append(msg.stream)
        if not self.box.connected:
            self.ready = False
            self.box.connect()
        return acks

    def _replay(self, resume: Resume) -> None:
        for s, last in enumerate(resume.last):
            if s < len(self.evicted) and self.evicted[s] > last:
                n = self.evicted[s] - last
                self.lost += n
                log.warning("the restarted sink lacks up to %d results of stream %d: older than the replay buffer", n, s)
        self.ready = True
        for item in self.buffer:
            if isinstance(item, EndOfStream):
                if item.stream in resume.ended:
                    continue
            elif isinstance(item, list):
                item = [r for r in item if r.frame.seq > resume.last[r.frame.stream]]
                if not item:
                    continue
            if not self.box.send(item):
                self.ready = False
                return


class Inputs:
    def __init__(self) -> None:
        self.pool_of: dict[int, Optional[SlotPool]] = {}  # peer → the pool it writes
        self.peer_of: dict[int, int] = {}  # stream → its current producer's peer
        self._refs: dict[int, int] = {}  # id(pool) → slots of it still held here
        self._orphans: dict[int, SlotPool] = {}  # pools whose producer is gone

    def joined(self, peer: int, hello: Hello) -> None:
        pool = None
        if hello.pool is not None:
            try:
                pool = SlotPool(hello.pool).attach()
            except ResourceError as exc:  # its producer died and the segment went with it
                log.warning("%s", exc)
        self.pool_of[peer] = pool
        self.peer_of[hello.stream] = peer

    def lost(self, peer: int) -> None:
        pool = self.pool_of.pop(peer, None)
        if pool is not None:
            if self._refs.get(id(pool), 0):
                self._orphans[id(pool)] = pool
            else:
                pool.close()

    def hold(self, peer: int) -> Optional[SlotPool]:
        pool = self.pool_of.get(peer)
        if pool is not None:
            self._refs[id(pool)] = self._refs.get(id(pool), 0) + 1
        return pool

    def release(self, pool: SlotPool, slot: int) -> None:
        pool.release(slot)
        n = self._refs[id(pool)] = self._refs.get(id(pool), 1) - 1
        if n <= 0 and id(pool) in self._orphans:
            self._orphans.pop(id(pool)).close()
            self._refs.pop(id(pool), None)
