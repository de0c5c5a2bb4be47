"""The classifier's backlog: oldest frames first across streams, and a live (drop-oldest)
stream keeps only its recent frames, releasing the stale ones' slots unclassified."""
from __future__ import annotations

import pytest

from videoclf.core.records import FrameRecord
from videoclf.ipc.shm import PoolOwner, new_run_id
from videoclf.runtime.backlog import Backlog


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
    # given a file stream (0) and a live stream (1) that may drop, keeping a batch of 2 and no
    # frame older than that
    backlog = Backlog(2, {1: 0.0}, keep=2, release=lambda pool, slot: pool.release(slot))
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


def test_a_live_stream_keeps_what_came_within_its_queue_time_bounded_by_half_its_slots():
    owner = PoolOwner(new_run_id())
    try:
        big, small = owner.create("big", 40, (4, 4, 3), "uint8"), owner.create("small", 10, (4, 4, 3), "uint8")
        pools = {0: big, 1: small}
        # given two cameras whose frames may wait 0.21 s (6 frame intervals at 30 fps, and a bit)
        backlog = Backlog(2, {0: 0.21, 1: 0.21}, keep=2, release=lambda pool, slot: pool.release(slot))
        # when each queues 15 frames while the classifier is stalled
        for seq in range(15):
            for stream, pool in pools.items():
                slot = pool.acquire(1.0)
                assert slot is not None
                backlog.add(FrameRecord(stream, seq, slot, seq / 30, 0.0, 100.0 + seq / 30, 1.0), pool)
        # then the camera with room keeps the frames decoded within 0.21 s of its newest (seq 8..14)
        assert [r.seq for r, _ in backlog.frames[0]] == list(range(8, 15)) and backlog.dropped[0] == 8
        # and the other keeps half its 10 slots, the rest stay free for frames in flight
        assert [r.seq for r, _ in backlog.frames[1]] == list(range(10, 15)) and backlog.dropped[1] == 10
        assert sum(small.acquire(0.5) is not None for _ in range(6)) == 5
    finally:
        owner.unlink_all()


def test_a_lossless_stream_is_never_dropped_however_long_its_backlog(pools):
    backlog = Backlog(2, {}, keep=1, release=lambda pool, slot: pool.release(slot))
    for rec in frames(pools, 0, 6, 0.0):
        backlog.add(rec, pools[0])
    assert backlog.dropped == {0: 0, 1: 0} and [r.seq for r, _ in backlog.take(6)] == list(range(6))


def test_a_frame_with_zones_counts_one_input_per_zone_against_the_batch(pools):
    # given a stream with 3 zones (0) and one without (1), frames alternating in decode time
    backlog = Backlog(2, {}, keep=2, release=lambda pool, slot: pool.release(slot), zones={0: 3})
    for rec in sorted(frames(pools, 0, 3, 100.0) + frames(pools, 1, 3, 100.001), key=lambda r: r.t_decoded):
        backlog.add(rec, pools[rec.stream])
    # when batches of up to 4 engine inputs are taken
    batches = [[(r.stream, r.seq) for r, _ in backlog.take(4)] for _ in range(4)]
    # then a zoned frame (3 inputs) goes with at most one plain frame; none is split or skipped
    assert batches == [[(0, 0), (1, 0)], [(0, 1), (1, 1)], [(0, 2), (1, 2)], []]
    # and a frame with more zones than the batch still goes, alone
    backlog = Backlog(1, {}, keep=2, release=lambda pool, slot: pool.release(slot), zones={0: 3})
    backlog.add(FrameRecord(0, 9, 0, None, 0.0, 1.0, 1.0), pools[0])
    assert [r.seq for r, _ in backlog.take(2)] == [9]
