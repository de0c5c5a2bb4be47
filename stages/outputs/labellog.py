"""The label log's format and its reading: where a stream's numbering goes on after a crash or
in a new run, how many lines a killed sink wrote after its last stats, and whether a file's
log is complete.

A stream's log is ``<output.dir>/<stream>.<format>`` (the current day's), with earlier days
beside it as ``<stream>.<YYYY-MM-DD>.<format>`` (``stages/outputs/appendlog.py`` rotates them).
Frame numbers only grow along a stream's logs, across restarts and runs."""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Optional

from videoclf.stages.outputs.appendlog import AppendLog, day_of, rotated_files


def log_path(output: Any, stream: str) -> str:
    """The stream's current label log."""
    return os.path.join(output.dir, f"{stream}.{output.format}")


def logged_frames(output: Any, stream: str, chunk: int = 65536) -> Iterator[int]:
    """Frame numbers on the complete lines of a stream's label log, last line first (read
    backwards in chunks, so a long log costs only as much as the lines asked for); the
    rotated logs of earlier days follow, newest first."""
    path = log_path(output, stream)
    for p in [path, *reversed(rotated_files(path))]:
        yield from _frames_backwards(p, output.format, chunk)


def _frames_backwards(path: str, fmt: str, chunk: int) -> Iterator[int]:
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        end = f.seek(0, os.SEEK_END)
        tail = b""
        first = True
        while end > 0:
            start = max(end - chunk, 0)
            f.seek(start)
            lines = (f.read(end - start) + tail).split(b"\n")
            end = start
            tail = lines.pop(0) if start > 0 else b""  # may be the end of a line that starts further back
            if first:
                lines.pop()  # the part after the last newline may be half written
                first = False
            for line in reversed(lines):
                n = frame_of(line, fmt)
                if n is not None:
                    yield n


def frame_of(line: bytes, fmt: str) -> Optional[int]:
    try:
        if fmt == "jsonl":
            return int(json.loads(line)["frame"])
        return int(line.split(b",")[1])
    except (ValueError, KeyError, IndexError, TypeError):
        return None  # a header, a blank or a torn line


def last_logged_frame(output: Any, stream: str) -> Optional[int]:
    """Frame number on the last complete line of a stream's label log, if there is one."""
    return next(logged_frames(output, stream), None)


def logged_after(output: Any, stream: str, seq: Optional[int]) -> int:
    """How many complete lines at the end of the log number a frame after ``seq`` (frame
    numbers only grow along a log, across restarts too; ``None``: stats taken before the
    stream's first line, so every line of this run counts)."""
    seq = -1 if seq is None else seq
    n, prev = 0, None
    for frame in logged_frames(output, stream):
        if frame <= seq or (prev is not None and frame >= prev):  # reached the counted part, or an earlier run
            break
        n, prev = n + 1, frame
    return n


def csv_header(top_k: int) -> str:
    ranks = [f"{c}{j + 1}" for j in range(top_k) for c in ("label", "score")]
    return ",".join(["stream", "frame", "pts", "time", *ranks])


def open_log(output: Any, stream: str, top_k: int, truncate: bool = False) -> AppendLog:
    """A stream's label log, opened for appending (``stages/outputs/appendlog.py``)."""
    csv = output.format == "csv"
    return AppendLog(log_path(output, stream), csv_header(top_k) if csv else None,
                     day_of_line=csv_day_of_line if csv else day_of_line).open(truncate=truncate)


def day_of_line(line: bytes) -> Optional[str]:
    """The local day of a JSONL label or event line (its epoch ``time``), for rotation."""
    try:
        return day_of(float(json.loads(line)["time"]))
    except (ValueError, KeyError, TypeError):
        return None


def csv_day_of_line(line: bytes) -> Optional[str]:
    try:
        return day_of(float(line.split(b",")[3]))
    except (ValueError, IndexError):
        return None


# -- completion marks: a file stream whose log holds every frame is not classified again ---
MARKS_DIR = ".videoclf"  # in output.dir: small JSON files, one per file stream


def source_identity(source: str) -> dict[str, Any]:
    st = os.stat(source)
    return {"source": os.path.abspath(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def mark_path(out_dir: str, stream: str) -> str:
    return os.path.join(out_dir, MARKS_DIR, f"{stream}.json")


def read_mark(out_dir: str, stream: str) -> Optional[dict[str, Any]]:
    try:
        with open(mark_path(out_dir, stream), encoding="utf-8") as f:
            mark = json.load(f)
        return mark if isinstance(mark, dict) else None
    except (OSError, ValueError):
        return None


def write_mark(out_dir: str, stream: str, mark: dict[str, Any]) -> None:
    """Write atomically (a reader sees the old mark or the new one, whole)."""
    path = mark_path(out_dir, stream)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(mark, f)
    os.replace(tmp, path)
