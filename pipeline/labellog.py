"""Reading a label log from its end: where a stream's numbering goes on after a crash, and
how many lines a killed sink wrote after its last stats."""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Optional


def logged_frames(output: Any, stream: str, chunk: int = 65536) -> Iterator[int]:
    """Frame numbers on the complete lines of a stream's label log, last line first (read
    backwards in chunks, so a long log costs only as much as the lines asked for)."""
    path = os.path.join(output.dir, f"{stream}.{output.format}")
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
                n = _frame_of(line, output.format)
                if n is not None:
                    yield n


def _frame_of(line: bytes, fmt: str) -> Optional[int]:
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
