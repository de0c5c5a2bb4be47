"""The label log's format, in one place: how a line is written (JSONL or CSV), how its frame
number, day and first label are read back, where a stream's numbering goes on after a crash or
in a new run, how many lines a killed sink wrote after its last stats, and whether a file's
log is complete.

A stream's log is ``<output.dir>/<stream>.<format>`` (the current day's), with earlier days
beside it as ``<stream>.<YYYY-MM-DD>.<format>`` (``stages/outputs/appendlog.py`` rotates them).
Frame numbers only grow along a stream's logs, across restarts and runs."""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Iterator, Optional, Sequence

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


# -- one line: stream, frame, pts, time, then the top-k labels and scores ------------------
def label_record(stream: str, frame: int, pts: Optional[float], epoch: float, top: Sequence[tuple[str, float]],
                 random_weights: bool = False, smoothed: Optional[tuple[str, float]] = None) -> dict[str, Any]:
    """The fields of one label line (a JSONL line is this object); ``smoothed``: the smoothed
    top-1 of a stream that smooths its labels (the raw top-k stays as it is)."""
    rec: dict[str, Any] = {"stream": stream, "frame": frame, "pts": None if pts is None else round(pts, 6),
                           "time": round(epoch, 6), "top": [{"label": lbl, "score": s} for lbl, s in top]}
    if smoothed is not None:
        rec["smoothed"] = {"label": smoothed[0], "score": smoothed[1]}
    if random_weights:
        rec["weights"] = "none (random init)"
    return rec


def format_line(fmt: str, rec: dict[str, Any]) -> str:
    """One line of a ``jsonl`` or ``csv`` label log (no newline) from ``label_record``."""
    if fmt == "jsonl":
        return json.dumps(rec, separators=(",", ":"))
    buf = io.StringIO()
    sm = rec.get("smoothed")
    csv.writer(buf, lineterminator="").writerow(
        [rec["stream"], rec["frame"], rec["pts"], rec["time"], *(v for t in rec["top"] for v in (t["label"], t["score"])),
         *((sm["label"], sm["score"]) if sm else ())])
    return buf.getvalue()


def csv_header(top_k: int, smoothed: bool = False) -> str:
    """A CSV log's first line; a stream that smooths its labels ends each row with its smoothed top-1."""
    ranks = [f"{c}{j + 1}" for j in range(top_k) for c in ("label", "score")]
    return ",".join(["stream", "frame", "pts", "time", *ranks, *(("smoothed_label", "smoothed_score") if smoothed else ())])


def smoothed_label(line: str, fmt: str, top_k: int) -> Optional[tuple[str, float]]:
    """The smoothed top-1 of a label line of ``top_k`` labels; ``None`` where it has none (no smoothing)."""
    try:
        if fmt == "jsonl":
            sm = json.loads(line)["smoothed"]
            return str(sm["label"]), float(sm["score"])
        row = next(csv.reader([line]))
        return (row[-2], float(row[-1])) if len(row) == 4 + 2 * top_k + 2 else None
    except (ValueError, KeyError, IndexError, TypeError, StopIteration):
        return None


def frame_of(line: bytes, fmt: str) -> Optional[int]:
    """The frame number of a label line; ``None`` for a header, a blank or a torn line."""
    try:
        if fmt == "jsonl":
            return int(json.loads(line)["frame"])
        return int(line.split(b",")[1])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def top_label(line: str, fmt: str) -> Optional[tuple[str, float]]:
    """The first label and score of a label line (for the MQTT state); ``None`` if it has none."""
    try:
        if fmt == "jsonl":
            top = json.loads(line)["top"][0]
            return str(top["label"]), float(top["score"])
        row = next(csv.reader([line]))
        return row[4], float(row[5])
    except (ValueError, KeyError, IndexError, TypeError, StopIteration):
        return None


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


def day_reader(fmt: str) -> Any:
    """How the rotation reads a line's day in a ``fmt`` label log."""
    return csv_day_of_line if fmt == "csv" else day_of_line


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


def open_log(output: Any, stream: str, top_k: int, truncate: bool = False) -> AppendLog:
    """A stream's label log, opened for appending (``stages/outputs/appendlog.py``)."""
    header = csv_header(top_k) if output.format == "csv" else None
    return AppendLog(log_path(output, stream), header, day_of_line=day_reader(output.format)).open(truncate=truncate)


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
