"""Bounded disk use in the sink process: retention rules per kind of output, and the free-space
floor that pauses video and snapshots before anything else.

Only files this run's streams name are ever considered (``<stream>.<day>.jsonl``,
``events.<day>.jsonl``, ``<stream>_<time>.mp4``, ``snapshots/<stream>_<time>_….jpg``,
``clips/<stream>_<time>_….ts``): other
files in ``output.dir`` are not ours to delete, and neither is a file still being written.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from typing import Any, Callable, Iterable, Optional

from videoclf.stages.outputs.appendlog import rotated_files
from videoclf.config.outputs import Retention, RetentionRule
from videoclf.core.sinkstats import DiskStats, RetentionStats

log = logging.getLogger(__name__)

KINDS = ("labels", "events", "video", "snapshots", "clips")
DISK_CHECK_S = 1.0  # free space is read at most this often
_STAMP = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"


class Housekeeper:
    """Applies ``output.retention`` and watches ``output.min_free`` for one output directory."""

    def __init__(self, out_dir: str, streams: Iterable[str], fmt: str, retention: Optional[Retention],
                 min_free: int, in_use: Callable[[], set[str]] = set) -> None:
        self.dir, self.streams, self.fmt = out_dir, tuple(streams), fmt
        self.rules = retention or Retention()
        self.min_free = min_free
        self.in_use = in_use  # paths being written: never deleted
        self.deleted = {k: 0 for k in KINDS}
        self.deleted_bytes = {k: 0 for k in KINDS}
        self.free: Optional[int] = None
        self.low = False
        self.low_since: Optional[float] = None
        self.pauses = 0
        self._next_disk = 0.0
        self._next_sweep = 0.0
        self._video = [re.compile(rf"^{re.escape(s)}_{_STAMP}(-\d+)?\.mp4$") for s in self.streams]
        self._snaps = [re.compile(rf"^{re.escape(s)}_{_STAMP}_.*\.jpg$") for s in self.streams]
        self._clips = [re.compile(rf"^{re.escape(s)}_{_STAMP}_.*\.ts$") for s in self.streams]

    def add_stream(self, name: str) -> None:
        """A stream added while the run goes on: its files are this config's from now on."""
        if name not in self.streams:
            self.streams += (name,)
            self._video.append(re.compile(rf"^{re.escape(name)}_{_STAMP}(-\d+)?\.mp4$"))
            self._snaps.append(re.compile(rf"^{re.escape(name)}_{_STAMP}_.*\.jpg$"))
            self._clips.append(re.compile(rf"^{re.escape(name)}_{_STAMP}_.*\.ts$"))

    # -- the free-space floor ----------------------------------------------------------
    def tick(self, now: Optional[float] = None) -> None:
        """Cheap to call per frame: reads free space once a second, sweeps every ``every_s``."""
        now = time.monotonic() if now is None else now
        if now >= self._next_sweep and self.rules.active:
            self._next_sweep = now + self.rules.every_s
            self.sweep()
        if now >= self._next_disk:
            self._next_disk = now + DISK_CHECK_S
            self._check_disk()

    def _check_disk(self) -> None:
        try:
            self.free = shutil.disk_usage(self.dir).free
        except OSError:
            return
        low = self.free < self.min_free
        if low and not self.low and self.rules.active:
            self.sweep()  # the rules may free enough at once
            self.free = shutil.disk_usage(self.dir).free
            low = self.free < self.min_free
        if low and not self.low:
            self.low, self.low_since = True, time.monotonic()
            self.pauses += 1
            log.warning("output.dir %s: %.1f MB free, below output.min_free (%.1f MB): annotated video and "
                        "snapshots pause; label logs go on", self.dir, self.free / 1e6, self.min_free / 1e6)
        elif not low and self.low:
            log.warning("output.dir %s: %.1f MB free again: annotated video and snapshots resume (paused %.0f s)",
                        self.dir, self.free / 1e6, time.monotonic() - (self.low_since or time.monotonic()))
            self.low, self.low_since = False, None

    # -- retention -----------------------------------------------------------------------
    def files(self, kind: str) -> list[str]:
        """The files of one kind that retention may delete."""
        if kind == "labels":
            return [p for s in self.streams for p in rotated_files(os.path.join(self.dir, f"{s}.{self.fmt}"))]
        if kind == "events":
            return rotated_files(os.path.join(self.dir, "events.jsonl"))
        folders = {"video": (self.dir, self._video), "clips": (os.path.join(self.dir, "clips"), self._clips)}
        folder, patterns = folders.get(kind, (os.path.join(self.dir, "snapshots"), self._snaps))
        try:
            names = os.listdir(folder)
        except OSError:
            return []
        return [os.path.join(folder, n) for n in names if any(p.match(n) for p in patterns)]

    def sweep(self, kinds: Iterable[str] = KINDS) -> int:
        """Apply the rules now; the number of files deleted."""
        n = 0
        busy = self.in_use()
        for kind in kinds:
            rule: RetentionRule = getattr(self.rules, kind)
            if rule.max_age_days or rule.max_bytes:
                n += self._apply(kind, rule, busy)
        return n

    def _apply(self, kind: str, rule: RetentionRule, busy: set[str]) -> int:
        entries = []
        for p in self.files(kind):
            if p in busy:  # being written: neither deleted nor counted (it is the "+ one file")
                continue
            try:
                st = os.stat(p)
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        cutoff = time.time() - rule.max_age_days * 86400 if rule.max_age_days else None
        n = 0
        for mtime, size, path in entries:
            too_old = cutoff is not None and mtime < cutoff
            too_big = rule.max_bytes is not None and total > rule.max_bytes
            if not (too_old or too_big):
                break  # oldest first: the rest are newer, and the total is within the limit
            try:
                os.unlink(path)
            except OSError as exc:
                log.debug("retention: cannot delete %s: %s", path, exc)
                continue
            total -= size
            n += 1
            self.deleted[kind] += 1
            self.deleted_bytes[kind] += size
            log.debug("retention: deleted %s (%s, %d bytes, %s)", path, kind, size, "age" if too_old else "size")
        return n

    def retention_stats(self) -> RetentionStats:
        return RetentionStats(deleted_files=dict(self.deleted), deleted_bytes=dict(self.deleted_bytes))

    def disk_stats(self) -> DiskStats:
        return DiskStats(free_bytes=self.free, min_free=self.min_free, low=self.low, pauses=self.pauses)
