"""The classifier's backlog: oldest frames first across streams, and a live (drop-oldest)
stream keeps only its newest frames, releasing the stale ones' slots unclassified."""
from __future__ import annotations

import pytest

from pipeline.messages import FrameRecord
from pipeline.shm import PoolOwner, new_run_id
from pipeline.loops import Backlog


@pytest.fixture
def pools():
    owner = PoolOwner(new_run_id())
    try:
        yield {i: owner.create(f"s{i}", 6, (4, 4, 3), "uint8") for i in range(2)}
    finally:
        owner.unlink_all()


def frames(pools, stream: int, n: int, t0: float) -> list[FrameRecord]:
    out = []
    for seq in range(n):
        slot = pools[stream].acquire(1.0)
        assert slot is not None
        out.append(FrameRecord(stream, seq, slot, seq / 30, 0.0, t0 + seq / 30, 1.0))
    return out


def test_a_live_stream_keeps_its_newest_frames_and_frees_the_rest(pools):
    # given a file stream (0) and a live stream (1) that may drop, keeping 2 frames
    backlog = Backlog(2, frozenset({1}), keep=2, release=lambda pool, slot: pool.release(slot))
    # when each queues 5 frames faster than they are classified
    for rec in frames(pools, 0, 5, 100.0) + frames(pools, 1, 5, 100.01):
        backlog.add(rec, pools[rec.stream])
    # then the file keeps all 5, the camera its 2 newest, and its 3 stale slots are free again
    assert backlog.size == 7 and backlog.dropped == {0: 0, 1: 3}
    freed = [pools[1].acquire(2.0) for _ in range(4)]  # 1 never taken + the 3 released
    assert None not in freed and pools[1].acquire(0.2) is None
    # and batches come oldest first across streams, each stream in order
    taken = backlog.take(4)
    assert [(r.stream, r.seq) for r, _ in taken] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    rest = backlog.take(10)
    assert [(r.stream, r.seq) for r, _ in rest] == [(1, 3), (0, 4), (1, 4)]  # by decode time
    assert backlog.size == 0 and not backlog.pending(0) and not backlog.pending(1)


def test_a_lossless_stream_is_never_dropped_however_long_its_backlog(pools):
    backlog = Backlog(2, frozenset(), keep=1, release=lambda pool, slot: pool.release(slot))
    for rec in frames(pools, 0, 6, 0.0):
        backlog.add(rec, pools[0])
    assert backlog.dropped == {0: 0, 1: 0} and [r.seq for r, _ in backlog.take(6)] == list(range(6))
