"""Pre-allocated shared-memory slot pools.

A pool is one ``SharedMemory`` segment: a header of one state byte per slot, then the
fixed-size slots. Each pool has one producer and one consumer, and ownership is in the
state bytes, with no lock: the producer takes a FREE slot (marking it HELD), writes it and
sends its record; the consumer sets it FREE again when done. A single byte store is atomic,
so either side may be SIGKILLed at any instruction; when the consumer dies, the producer
(the pool's owner) reclaims the slots it held. Only the supervisor creates and unlinks segments;
children attach without registering with the resource tracker (Python < 3.13 registers
attaches too, and the tracker would unlink or warn when a child exits).
"""
from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from videoclf.core.errors import ResourceError, SharedMemoryError

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
    def header_bytes(self) -> int:
        return -(-self.slots // 64) * 64  # one state byte per slot, cache-line aligned

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.slot_bytes * self.slots


FREE, HELD = 0, 1


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
    except OSError as exc:  # out of descriptors, say: the stage's error names the segment
        raise SharedMemoryError(f"{SHM_DIR}/{name}: cannot attach to the segment ({exc.strerror or exc})") from exc
    finally:
        resource_tracker.register = original  # type: ignore[assignment]


class SlotPool:
    """Handle to a pool; picklable before ``attach()`` so it can be passed to a child."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self._shm: SharedMemory | None = None
        self._views: list[np.ndarray] = []
        self._state: np.ndarray | None = None
        self._cursor = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    def _map(self, shm: SharedMemory) -> None:
        self._shm = shm
        n, h = self.spec.slot_bytes, self.spec.header_bytes
        self._state = np.ndarray((self.spec.slots,), np.uint8, buffer=shm.buf)
        self._views = [np.ndarray(self.spec.shape, self.spec.dtype, buffer=shm.buf, offset=h + i * n)
                       for i in range(self.spec.slots)]

    def attach(self) -> "SlotPool":
        if self._shm is None:
            self._map(_attach_untracked(self.spec.name))
        return self

    @property
    def attached(self) -> bool:
        return self._shm is not None

    def view(self, slot: int) -> np.ndarray:
        return self._views[slot]

    # -- producer side -----------------------------------------------------------
    def take(self) -> int | None:
        """A free slot, now HELD by the producer, or None; round robin from the last one."""
        state = self._state
        assert state is not None, "pool not attached"
        free = np.flatnonzero(state == FREE)
        if not len(free):
            return None
        after = free[free >= self._cursor]
        slot = int(after[0] if len(after) else free[0])
        state[slot] = HELD
        self._cursor = slot + 1
        return slot

    def acquire(self, timeout: float, stop: Any = None) -> int | None:
        """``take`` with a bounded wait (polling: the consumer frees slots without telling)."""
        slot = self.take()
        if slot is not None or timeout <= 0:
            return slot
        end = time.monotonic() + timeout
        pause = 0.0005
        while slot is None and time.monotonic() < end and not (stop is not None and stop.is_set()):
            time.sleep(min(pause, max(end - time.monotonic(), 0)))
            pause = min(pause * 2, 0.004)
            slot = self.take()
        return slot

    def held(self) -> list[int]:
        """Slots not free: taken by the producer or not yet released by the consumer."""
        return [int(i) for i in np.flatnonzero(self._state != FREE)] if self._state is not None else []

    def reclaim(self, slots: Any = None) -> None:
        """The consumer died: its slots (all, or ``slots``) are the producer's again."""
        if self._state is not None:
            if slots is None:
                self._state[:] = FREE
            else:
                for s in slots:
                    self._state[s] = FREE

    # -- consumer side -----------------------------------------------------------
    def release(self, slot: int) -> None:
        if self._state is not None:
            self._state[slot] = FREE

    def close(self) -> None:
        self._views = []
        self._state = None
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:  # a view is still referenced somewhere; the mapping dies with us
                pass
            self._shm = None


class PoolOwner:
    """The supervisor's side: creates segments and unlinks them (each at its domain's end, or
    all at the end of the run)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._owned: dict[str, tuple[SharedMemory, SlotPool]] = {}

    def create(self, label: str, slots: int, shape: tuple[int, ...], dtype: str) -> SlotPool:
        spec = PoolSpec(segment_name(self.run_id, label), slots, tuple(int(s) for s in shape), dtype)
        try:
            shm = SharedMemory(name=spec.name, create=True, size=spec.total_bytes)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                raise ResourceError(f"{SHM_DIR}: cannot allocate {spec.total_bytes / 2**20:.1f} MiB for {label}") from exc
            # permission, descriptors, a read-only /dev/shm, a name in use: the system's refusal, not the config's
            raise SharedMemoryError(f"{SHM_DIR}/{spec.name}: cannot create the segment for {label} "
                                    f"({exc.strerror or exc})") from exc
        pool = SlotPool(spec)
        pool._map(shm)
        pool.reclaim()
        self._owned[spec.name] = (shm, pool)
        return pool

    def unlink(self, pool: SlotPool) -> None:
        """Remove one pool (its domain was rebuilt); a consumer that still maps it keeps the
        pages until it lets go."""
        shm, own = self._owned.pop(pool.spec.name, (None, None))
        if shm is None:
            return
        own.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass

    def unlink_all(self) -> None:
        for _, pool in list(self._owned.values()):
            self.unlink(pool)


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
