"""The sink's display frames with zones: each zone's result of a frame gets the frame at once."""
from __future__ import annotations

import threading
import time

import numpy as np

from videoclf.core.records import DisplayGeom, FrameRecord, Hello
from videoclf.ipc.display import DisplayMatcher
from videoclf.ipc.shm import PoolOwner, new_run_id


def test_the_same_frame_asked_again_is_handed_over_without_waiting():
    owner = PoolOwner(new_run_id())
    try:
        # given a stream's every-frame display pool holding frame 5 (the last one: none after it)
        geom = DisplayGeom(4, 4, 30.0, every_frame=True)
        pool = owner.create("disp", 4, geom.shape, "uint8")
        slot = pool.acquire(1.0)
        pool.view(slot)[:] = 7
        matcher = DisplayMatcher({0: geom})
        matcher.joined(1, Hello("display", 0, pool.spec))
        matcher.add(1, FrameRecord(0, 5, slot, None, 0.0, 0.0, 1.0))
        pumped: list[float] = []
        stop = threading.Event()
        first = matcher.frame_for(0, 5, pumped.append, stop)
        # when the frame's next zones ask for it
        t0 = time.monotonic()
        again = [matcher.frame_for(0, 5, pumped.append, stop) for _ in range(2)]
        # then they get it at once (no wait for a frame after it), and no frame is counted missing
        assert time.monotonic() - t0 < 0.5 and not pumped
        assert all(a is not None and np.array_equal(a, first) and (a == 7).all() for a in again)
        assert matcher.missing == 0
    finally:
        owner.unlink_all()
