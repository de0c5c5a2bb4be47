"""Links that a killed process cannot wedge: a producer or a consumer is SIGKILLed in a real
process, and the survivor goes on (socket links, slot pools, flags)."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import pytest

from videoclf.ipc.links import Forward, Producer
from videoclf.core.records import Ack, EndOfStream, FrameRecord, Hello, Resume
from videoclf.ipc.shm import SlotPool
from videoclf.runtime.specs import Port
from videoclf.ipc.transport import Flag, Inbox, Joined, Lost, Outbox, address

CTX = mp.get_context("spawn")


def _produce_forever(addr: str, tag: str) -> None:
    box = Outbox(addr, Hello("source", 0))
    i = 0
    while True:  # large messages: a SIGKILL often lands in the middle of one
        if box.send((tag, i, b"x" * 200_000)):
            i += 1
        else:
            time.sleep(0.01)


def _data(got: list) -> list:
    return [m for m in got if not isinstance(m, (Joined, Lost))]


def _messages(inbox: Inbox, until: float, stop_when) -> list:
    got = []
    while time.monotonic() < until:
        m = inbox.get(0.1)
        if m is not None:
            got.append(m[1])
            if stop_when(got):
                break
    return got


def test_a_producer_killed_mid_message_leaves_the_inbox_usable_for_the_next_one(owner):
    # given a consumer and a producer process sending large messages as fast as it can
    inbox = Inbox(address(owner.run_id, "t")).open()
    try:
        first = CTX.Process(target=_produce_forever, args=(inbox.address, "first"), daemon=True)
        first.start()
        got = _messages(inbox, time.monotonic() + 60, lambda g: len(_data(g)) >= 20)
        # when the producer is SIGKILLed while it writes
        os.kill(first.pid, signal.SIGKILL)
        first.join(10)
        got += _messages(inbox, time.monotonic() + 10, lambda g: isinstance(g[-1], Lost))
        # then the consumer sees it go, and every message it did get is whole and in order
        assert isinstance(got[0], Joined) and got[0].hello == Hello("source", 0)
        assert isinstance(got[-1], Lost)
        data = _data(got)
        assert [m[1] for m in data] == list(range(len(data))) and all(len(m[2]) == 200_000 for m in data)
        # and a new producer on the same inbox is read as before
        second = CTX.Process(target=_produce_forever, args=(inbox.address, "second"), daemon=True)
        second.start()
        more = _messages(inbox, time.monotonic() + 60, lambda g: len(_data(g)) >= 5)
        second.kill()
        second.join(10)
        assert [m[0] for m in _data(more)][:5] == ["second"] * 5
    finally:
        inbox.close()


def _consume(addr: str, release: int, seen) -> None:
    """A consumer that attaches the producer's pool from its hello, releases the first
    ``release`` frames and holds the rest (then gets killed); records what it got."""
    inbox = Inbox(addr).open()
    pool = None
    n = 0
    while True:
        m = inbox.get(0.1)
        if m is None:
            continue
        peer, msg = m
        if isinstance(msg, Joined):
            pool = SlotPool(msg.hello.pool).attach()
        elif isinstance(msg, FrameRecord):
            seen.put((msg.seq, int(pool.view(msg.slot)[0])))
            n += 1
            if n <= release:
                pool.release(msg.slot)
        elif isinstance(msg, EndOfStream):
            inbox.reply(peer, Ack(msg.stream))


def _send_frames(prod: Producer, seqs: range) -> None:
    for seq in seqs:
        slot = prod.take(10)
        assert slot is not None
        prod.pool.view(slot)[:] = seq
        assert prod.send(slot, FrameRecord(0, seq, slot, None, 0.0, 0.0, 0.0))


def _drain(q, n: int, timeout: float = 60) -> list:
    out, end = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        try:
            out.append(q.get(timeout=0.2))
        except Exception:  # noqa: BLE001 (queue.Empty)
            pass
    return out


@pytest.mark.parametrize("lossless", [True, False])
def test_a_consumer_killed_holding_slots_gives_them_back(owner, lossless):
    # given a producer with 4 slots and a consumer process that frees 1 frame and holds 3
    pool = owner.create("p", 4, (2,), "uint8")
    addr = address(owner.run_id, "c")
    seen = CTX.Queue()
    old = CTX.Process(target=_consume, args=(addr, 1, seen), daemon=True)
    old.start()
    stop = threading.Event()
    prod = Producer(Port(pool, addr), Hello("source", 0, pool.spec), resend=lossless, stop=stop)
    try:
        end = time.monotonic() + 30
        while not prod.box.connect() and time.monotonic() < end:  # the consumer process is starting
            time.sleep(0.05)
        _send_frames(prod, range(4))
        assert sorted(_drain(seen, 4)) == [(i, i) for i in range(4)]
        # when the consumer is SIGKILLed holding slots 1-3
        os.kill(old.pid, signal.SIGKILL)
        old.join(10)
        # (a queue of its own: the killed one may have died holding the old queue's write lock,
        # the very wedge these links avoid)
        seen = CTX.Queue()
        new = CTX.Process(target=_consume, args=(addr, 100, seen), daemon=True)
        new.start()
        # then the producer goes on with its next frame
        if lossless:
            # a lossless link waits for the new consumer and sends it the held frames again,
            # from the pixels still in their slots, before the new one
            _send_frames(prod, range(4, 5))
            assert sorted(_drain(seen, 4)) == [(1, 1), (2, 2), (3, 3), (4, 4)]
            assert prod.lost == 0
        else:
            # a lossy one frees them, counts them as lost, and drops frames until a consumer is there
            seq, end = 4, time.monotonic() + 30
            while time.monotonic() < end:
                slot = prod.take(10)
                prod.pool.view(slot)[:] = seq
                if prod.send(slot, FrameRecord(0, seq, slot, None, 0.0, 0.0, 0.0)):
                    break
                seq += 1
                time.sleep(0.01)
            assert _drain(seen, 1) == [(seq, seq % 256)]
            assert prod.lost == 3 and set(prod.pool.held()) <= {slot}  # at most the frame just sent
        # and its stream's end is acknowledged by the new consumer
        prod.finish(EndOfStream(0, 4), wait=True)
        assert prod.acked
        new.kill()
        new.join(10)
    finally:
        stop.set()
        seen.close()


def _watch_flag(flag: Flag, out) -> None:
    while not flag.is_set():
        time.sleep(0.005)
    out.put("seen")


def test_flags_need_no_lock_a_killed_reader_cannot_hold(owner):
    # given a flag in a shared segment and two reader processes, one of them killed mid-poll
    flags = owner.create("ctl", 3, (1,), "uint8")
    stop = Flag(flags, 0)
    out = CTX.Queue()
    victim = CTX.Process(target=_watch_flag, args=(stop, out), daemon=True)
    reader = CTX.Process(target=_watch_flag, args=(stop, out), daemon=True)
    victim.start()
    reader.start()
    time.sleep(1.0)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    # when the flag is set, then the surviving reader sees it, and wait() returns at once
    stop.set()
    assert out.get(timeout=30) == "seen"
    assert stop.wait(0.01) and not Flag(flags, 1).wait(0.02)
    reader.join(10)
    out.close()


def _results(stream: int, seqs: range) -> list:
    from videoclf.core.records import Result

    return [Result(FrameRecord(stream, s, -1, None, 0.0, 0.0, 0.0), (("x", 1.0),), 0.0, 1) for s in seqs]


def _serve(inbox: Inbox, fwd: Forward, resume: Resume, want: int, timeout: float = 10) -> list:
    """Play the sink: tell a classifier that connects where the logs end, gather results."""
    got, end = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        fwd.poll()
        m = inbox.get(0.01)
        if m is None:
            continue
        if isinstance(m[1], Joined):
            inbox.reply(m[0], resume)
        elif isinstance(m[1], list):
            got += [(r.frame.stream, r.frame.seq) for r in m[1]]
    return got


def test_a_new_sink_gets_again_what_its_logs_lack_and_nothing_twice(owner):
    # given a classifier's link to a sink, which has logged 5 results of stream 0
    addr = address(owner.run_id, "sink")
    fwd = Forward(addr, 2)
    first = Inbox(addr).open()
    fwd.send(_results(0, range(5)))  # kept until the sink says where its logs end
    assert _serve(first, fwd, Resume((-1, -1)), 5) == [(0, s) for s in range(5)]
    # when the sink dies with frames 3-4 still unwritten, and results go on meanwhile
    first.close()
    fwd.send(_results(0, range(5, 8)) + _results(1, range(3)))
    second = Inbox(addr).open()
    # then the new sink, whose log ends at frame 2, gets every result after it, once, in order
    got = _serve(second, fwd, Resume((2, -1)), 8)
    assert got == [(0, s) for s in range(3, 8)] + [(1, s) for s in range(3)]
    assert fwd.lost == 0
    second.close()


def test_acquire_by_policy_drop_newest_returns_at_once_lossless_waits_until_a_slot_or_stop(owner):
    # given a producer whose 2 slots are both held by its consumer
    pool = owner.create("full", 2, (2,), "uint8")
    stop = threading.Event()
    prod = Producer(Port(pool, address(owner.run_id, "nobody")), Hello("display", 0, pool.spec), False, stop)
    assert prod.pool.take() is not None and prod.pool.take() is not None
    # then drop-newest gives up at once (the caller drops the frame at hand, the held ones stay)
    t0 = time.monotonic()
    assert prod.acquire(False, 0.0) is None and time.monotonic() - t0 < 0.5
    assert sorted(prod.pool.held()) == [0, 1]
    # and lossless waits until the consumer frees a slot
    threading.Timer(0.3, pool.release, args=(1,)).start()
    assert prod.acquire(True, 0.0) == 1
    # or until stop, when none comes
    threading.Timer(0.3, stop.set).start()
    assert prod.acquire(True, 0.0) is None and stop.is_set()
