"""Pre-allocated shared-memory slot pools.

A pool is one ``SharedMemory`` segment cut into fixed-size slots plus a queue of free slot
indices. Ownership is explicit: a producer writes only into a slot it took from the free
queue, and a slot returns to the queue only when its consumer releases it, so nothing is
overwritten while a reader holds it. Only the supervisor creates and unlinks segments;
children attach without registering with the resource tracker (Python < 3.13 registers
attaches too, and the tracker would unlink or warn when a child exits).
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import re
import secrets
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from pipeline.errors import ResourceError

log = logging.getLogger(__name__)

PREFIX = "videoclf"
SHM_DIR = "/dev/shm"
_NAME = re.compile(rf"^{PREFIX}_(\d+)_[0-9a-f]+_")


@dataclass(frozen=True)
class PoolSpec:
    name: str
    slots: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def slot_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @property
    def total_bytes(self) -> int:
        return self.slot_bytes * self.slots


def new_run_id() -> str:
    # VIDEOCLF_SHM_TAG (hex) lets a test session recognise its own segments among others'
    tag = os.environ.get("VIDEOCLF_SHM_TAG", "")
    if not re.fullmatch(r"[0-9a-f]{0,16}", tag):
        tag = ""
    return f"{os.getpid()}_{tag}{secrets.token_hex(4)}"


def segment_name(run_id: str, label: str) -> str:
    return f"{PREFIX}_{run_id}_{label}"


def _attach_untracked(name: str) -> SharedMemory:
    original = resource_tracker.register
    resource_tracker.register = lambda *a, **k: None  # type: ignore[assignment]
    try:
        return SharedMemory(name=name)
    except FileNotFoundError:
        # the segment's owner is gone (or something removed it under the run): say which
        raise ResourceError(f"shared-memory segment {SHM_DIR}/{name} is gone: cannot attach to it") from None
    finally:
        resource_tracker.register = original  # type: ignore[assignment]


class SlotPool:
    """Handle to a pool; picklable before ``attach()`` so it can be passed to a child."""

    def __init__(self, spec: PoolSpec, free: Any) -> None:
        self.spec = spec
        self.free = free  # multiprocessing queue of free slot indices
        self._shm: SharedMemory | None = None
        self._views: list[np.ndarray] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "free": self.free}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["free"])  # type: ignore[misc]

    def _map(self, shm: SharedMemory) -> None:
        self._shm = shm
        n = self.spec.slot_bytes
        self._views = [np.ndarray(self.spec.shape, self.spec.dtype, buffer=shm.buf, offset=i * n)
                       for i in range(self.spec.slots)]

    def attach(self) -> "SlotPool":
        if self._shm is None:
            self._map(_attach_untracked(self.spec.name))
        return self

    def view(self, slot: int) -> np.ndarray:
        return self._views[slot]

    def acquire(self, timeout: float) -> int | None:
        try:
            return self.free.get(timeout=timeout) if timeout > 0 else self.free.get_nowait()
        except queue.Empty:
            return None

    def release(self, slot: int) -> None:
        self.free.put(slot)

    def close(self) -> None:
        self._views = []
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:  # a view is still referenced somewhere; the mapping dies with us
                pass
            self._shm = None


class PoolOwner:
    """The supervisor's side: creates segments, fills the free queues, unlinks at the end."""

    def __init__(self, ctx: Any, run_id: str) -> None:
        self._ctx = ctx
        self.run_id = run_id
        self._owned: list[tuple[SharedMemory, SlotPool]] = []

    def create(self, label: str, slots: int, shape: tuple[int, ...], dtype: str) -> SlotPool:
        spec = PoolSpec(segment_name(self.run_id, label), slots, tuple(int(s) for s in shape), dtype)
        try:
            shm = SharedMemory(name=spec.name, create=True, size=spec.total_bytes)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                raise ResourceError(f"{SHM_DIR}: cannot allocate {spec.total_bytes / 2**20:.1f} MiB for {label}") from exc
            raise
        pool = SlotPool(spec, self._ctx.Queue())
        pool._map(shm)
        for i in range(slots):
            pool.free.put(i)
        self._owned.append((shm, pool))
        return pool

    def unlink_all(self) -> None:
        while self._owned:
            shm, pool = self._owned.pop()
            pool.close()
            try:
                shm.unlink()
            except FileNotFoundError:
                pass


def check_free_space(needed: int, path: str = SHM_DIR) -> None:
    """Refuse to start rather than die of SIGBUS when /dev/shm cannot hold the rings."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < needed * 1.1:
        raise ResourceError(
            f"{path} has {free / 2**20:.1f} MiB free but the rings need {needed / 2**20:.1f} MiB; "
            "free space there, enlarge it (docker: --shm-size) or reduce ring_slots/max_batch")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_segments(path: str = SHM_DIR) -> list[str]:
    """Unlink segments left by runs whose supervisor is gone (e.g. killed with SIGKILL)."""
    removed = []
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return removed
    for name in names:
        m = _NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(path, name))
                removed.append(name)
            except OSError:
                pass
    if removed:
        log.warning("removed %d stale shared-memory segment(s) of dead runs: %s", len(removed), ", ".join(removed))
    return removed
