"""Append-only line files that a crash, a full disk or a re-run never damage.

Label logs and ``events.jsonl`` are written through :class:`AppendLog`:

- **Never truncated.** A file is opened for appending; what an earlier run wrote stays.
- **Whole lines.** Each line reaches the file in one ``write`` on an ``O_APPEND`` descriptor.
  A write the disk cut short (ENOSPC) is cut back to the line before it and reported as
  :class:`DiskFull`, so the caller can retry the same line later: a full disk leaves no torn
  line and loses no line already written.
- **Torn tails repaired.** A power cut or SIGKILL mid-line leaves a tail without its newline;
  the next open cuts it off (the line was never complete) and counts it.
- **Rotated by day.** The current file keeps its plain name (``cam1.jsonl``: tools that tail
  the current log keep working); when a line of a new local day comes, the file is renamed to
  ``cam1.2026-12-06.jsonl`` (``…-2026-12-06.1.jsonl`` if that exists: a rename never replaces
  a file) and a new current file starts.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import time
from typing import Callable, Optional

log = logging.getLogger(__name__)

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DiskFull(OSError):
    """A line could not be written for lack of space; the file holds only whole lines."""


def day_of(epoch: float) -> str:
    """Local calendar day of an epoch time, as rotated files are named."""
    return time.strftime("%Y-%m-%d", time.localtime(epoch))


def rotated_name(path: str, day: str, n: int = 0) -> str:
    stem, ext = os.path.splitext(path)
    return f"{stem}.{day}{f'.{n}' if n else ''}{ext}"


def rotated_files(path: str) -> list[str]:
    """The rotated files of ``path``, oldest first (by day, then by their number)."""
    folder, base = os.path.split(path)
    stem, ext = os.path.splitext(base)
    found = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    for name in names:
        if not (name.startswith(stem + ".") and name.endswith(ext)) or name == base:
            continue
        parts = name[len(stem) + 1:len(name) - len(ext)].split(".")
        if _DAY.match(parts[0]) and (len(parts) == 1 or (len(parts) == 2 and parts[1].isdigit())):
            found.append((parts[0], int(parts[1]) if len(parts) == 2 else 0, os.path.join(folder, name)))
    return [p for *_, p in sorted(found)]


def repair_tail(path: str) -> int:
    """Cut a torn last line (no newline after it) off ``path``; the bytes removed."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        end = size
        chunk = 4096
        while end > 0:
            start = max(end - chunk, 0)
            data = os.pread(fd, end - start, start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            os.ftruncate(fd, keep)
            os.fsync(fd)
        return size - keep
    finally:
        os.close(fd)


def _first_line(path: str, limit: int = 65536) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.readline(limit)
    except OSError:
        return b""


class AppendLog:
    """One append-only line file (see the module's docstring).

    ``day_of_line`` gives the local day a file's first line belongs to (``None``: unknown,
    e.g. a CSV header), which tells an existing file's day at open.
    """

    def __init__(self, path: str, header: Optional[str] = None, mode: int = 0o644, rotate: bool = True,
                 day_of_line: Optional[Callable[[bytes], Optional[str]]] = None) -> None:
        self.path, self.header, self.mode, self.rotate = path, header, mode, rotate
        self.day_of_line = day_of_line
        self.fd: Optional[int] = None
        self.size = 0
        self.day: Optional[str] = None
        self.repaired_bytes = 0
        self.rotations = 0

    def open(self, truncate: bool = False) -> "AppendLog":
        if not truncate:
            self.repaired_bytes += repair_tail(self.path)
            if self.repaired_bytes:
                log.warning("%s: cut a torn last line (%d bytes) left by an earlier run that stopped mid-write",
                            self.path, self.repaired_bytes)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
        self.fd = os.open(self.path, flags, self.mode)
        self.size = os.fstat(self.fd).st_size
        self.day = self._day_on_disk() if self._holds_lines() else None
        if self.size == 0 and self.header is not None:
            self._append((self.header + "\n").encode())
        return self

    def _day_on_disk(self) -> Optional[str]:
        line = _first_line(self.path)
        if self.header is not None and line.rstrip(b"\r\n") == self.header.encode():
            with open(self.path, "rb") as f:
                f.readline()
                line = f.readline(65536)
        if self.day_of_line is not None and line.endswith(b"\n"):
            day = self.day_of_line(line)
            if day:
                return day
        try:  # no readable first line: the day the file was last written
            return day_of(os.stat(self.path).st_mtime)
        except OSError:
            return None

    def write(self, line: str, epoch: Optional[float] = None) -> None:
        """Append one whole line (without its newline); ``epoch``: the time it is about, which
        picks its day. Raises :class:`DiskFull` with nothing half written."""
        if self.fd is None:
            raise ValueError(f"{self.path} is closed")
        day = day_of(time.time() if epoch is None else epoch)
        if self.rotate and self.day is not None and day != self.day and self._holds_lines():
            self._rotate()
        if self.day is None:
            self.day = day
        self._append((line + "\n").encode())

    def _holds_lines(self) -> bool:
        return self.size > (len(self.header) + 1 if self.header is not None else 0)

    def _append(self, data: bytes) -> None:
        assert self.fd is not None
        try:
            n = os.write(self.fd, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(exc.errno, f"{self.path}: {exc.strerror}") from exc
            raise
        if n < len(data):  # the disk filled mid-line: take the part back, keep whole lines only
            os.ftruncate(self.fd, self.size)
            raise DiskFull(errno.ENOSPC, f"{self.path}: no space left on device")
        self.size += n

    def _rotate(self) -> None:
        """Rename the current file after its day (never onto an existing file) and start anew."""
        assert self.fd is not None and self.day is not None
        n = 0
        while True:
            dest = rotated_name(self.path, self.day, n)
            try:
                os.link(self.path, dest)  # fails if dest exists: nothing is ever replaced
                break
            except FileExistsError:
                n += 1
        os.unlink(self.path)
        os.close(self.fd)
        self.fd = None
        self.rotations += 1
        log.debug("rotated %s to %s", self.path, dest)
        self.open()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
