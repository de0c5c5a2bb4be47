"""Slot pools: explicit ownership, cross-process attach, stale-segment cleanup, space check."""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest

from videoclf.core.errors import ResourceError, SharedMemoryError
from videoclf.ipc.shm import check_free_space, remove_stale_segments, segment_name

CTX = mp.get_context("spawn")


def test_a_held_slot_is_never_handed_out_again(owner):
    pool = owner.create("t", 2, (7, 33, 3), "uint8")
    a = pool.acquire(1.0)
    b = pool.acquire(1.0)
    assert {a, b} == {0, 1}
    assert pool.acquire(0.05) is None  # both held: the producer must wait, not overwrite
    pool.release(a)
    assert pool.acquire(1.0) == a


def test_slots_are_separate_views_of_one_segment(owner):
    pool = owner.create("t", 3, (7, 33, 3), "uint8")
    pool.view(0)[:] = 1
    pool.view(2)[:] = 3
    assert pool.view(0).shape == (7, 33, 3)
    assert (pool.view(1) == 0).all() and (pool.view(2) == 3).all()


def _child_writes(pool, slot, value):
    pool.attach()
    pool.view(slot)[:] = value
    pool.close()


def test_a_child_writes_pixels_the_parent_reads_without_pickling_them(owner):
    pool = owner.create("t", 2, (16, 16), "float32")
    p = CTX.Process(target=_child_writes, args=(pool, 1, 2.5))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert np.all(pool.view(1) == 2.5)


def test_child_attach_does_not_unlink_or_warn(owner):
    """Regression: Python < 3.13 registers attaches with the resource tracker, which then
    unlinks the segment (or warns about a leak) when the attaching process exits."""
    pool = owner.create("t", 1, (4,), "uint8")
    code = ("import pickle,sys; from videoclf.ipc.shm import SlotPool, PoolSpec; "
            f"p = SlotPool(PoolSpec({pool.spec.name!r}, 1, (4,), 'uint8')).attach(); p.view(0)[:] = 9; p.close()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "leaked" not in out.stderr
    assert os.path.exists(f"/dev/shm/{pool.spec.name}")
    assert (pool.view(0) == 9).all()


def test_segments_of_a_dead_run_are_removed_at_the_next_start(tmp_path):
    # a supervisor that died (SIGKILL) left a segment behind: its pid no longer exists
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    name = f"videoclf_{dead.pid}_{os.environ['VIDEOCLF_SHM_TAG']}00ff_cam_rgb"
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"\0" * 64)
    live_name = f"videoclf_{os.getpid()}_{os.environ['VIDEOCLF_SHM_TAG']}00fe_mine"
    with open(f"/dev/shm/{live_name}", "wb") as f:
        f.write(b"\0")
    try:
        removed = remove_stale_segments()
        assert name in removed
        assert not os.path.exists(f"/dev/shm/{name}")
        assert os.path.exists(f"/dev/shm/{live_name}")  # our own (live) run is left alone
    finally:
        os.unlink(f"/dev/shm/{live_name}")


def test_not_enough_shared_memory_is_a_clear_error():
    with pytest.raises(ResourceError, match=r"/dev/shm has .* MiB free but the rings need .* MiB"):
        check_free_space(1 << 50)


def test_attaching_a_segment_that_is_gone_names_it(owner):
    # given a pool whose segment was removed under the run
    pool = owner.create("gone", 2, (4,), "uint8")
    handle = type(pool)(pool.spec)
    owner.unlink_all()
    # when a stage attaches to it, then the error names the segment
    with pytest.raises(ResourceError, match=rf"shared-memory segment /dev/shm/{pool.spec.name} is gone"):
        handle.attach()


def test_a_segment_name_in_use_is_an_error_naming_the_segment(owner):
    # regression: an OSError other than no-space from creating a pool escaped as a traceback
    # given a segment already holding the name the owner's next pool takes
    from multiprocessing.shared_memory import SharedMemory

    taken = SharedMemory(name=segment_name(owner.run_id, "cam"), create=True, size=64)
    try:
        # when the pool is created, then a SharedMemoryError (an OSError, exit 1) names the segment
        with pytest.raises(SharedMemoryError) as err:
            owner.create("cam", 2, (4,), "uint8")
        assert str(err.value) == f"/dev/shm/{taken.name}: cannot create the segment for cam (File exists)"
        assert err.value.exit_code == 1 and isinstance(err.value, OSError)
    finally:
        taken.close()
        taken.unlink()
