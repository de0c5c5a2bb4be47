"""Where each stream of a new run starts, so that a re-run or a restart never logs a frame twice
and never rewrites what an earlier run logged.

- A **file** whose log is complete (its completion mark matches the file's path, size and
  modification time) is not classified again; the run says so.
- A file logged in part goes on after its last logged frame: exactly once across runs.
- A **live** camera numbers on after the last frame its logs hold, so frame numbers are unique
  across runs (a run's frames are the ones above the previous run's last).
- ``streams[].start_frame`` is the lowest number a stream starts from.
- ``--overwrite`` (the only way to lose lines) starts every log afresh from ``start_frame``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from videoclf.config.schema import Config, StreamConfig
from videoclf.core.errors import InputError
from videoclf.stages.outputs.labellog import last_logged_frame, log_path, read_mark, source_identity, write_mark

log = logging.getLogger("videoclf")

_SAME_FILE = ("source", "size", "mtime_ns")


@dataclass(frozen=True)
class Resumption:
    cfg: Config  # the streams to run (complete files left out); None-free
    first_seq: tuple[int, ...]  # per stream of ``cfg``: its first frame number in this run
    skipped: dict[str, str] = field(default_factory=dict)  # stream name → why it is not run

    @property
    def nothing_to_do(self) -> bool:
        return not self.cfg.streams


def resume(cfg: Config, overwrite: bool = False, logs: bool = True) -> Resumption:
    """The run's streams and their first frame numbers; ``logs=False`` (a benchmark's null sink)
    reads and writes no log."""
    if overwrite or not logs:
        return Resumption(cfg, tuple(s.start_frame for s in cfg.streams))
    keep: list[StreamConfig] = []
    first: list[int] = []
    skipped: dict[str, str] = {}
    for s in cfg.streams:
        # a stream with zones: one log each; it goes on after the lowest last frame among them
        # (the sink drops what each log holds already)
        lasts = {name: last_logged_frame(cfg.output, name) for name in s.logical_names}
        last = None if None in lasts.values() else min(lasts.values())
        start = s.start_frame if last is None else max(s.start_frame, last + 1)
        if not s.is_live and not s.loop:
            whys = [_file_state(cfg, s, name, n) for name, n in lasts.items()]
            if all(whys):
                skipped[s.name] = "; ".join(whys)
                continue
        if last is not None:
            log.info("stream %s: %s holds frames up to %d; numbering goes on at %d", s.name,
                     ", ".join(log_path(cfg.output, name) for name in lasts), last, start)
        keep.append(s)
        first.append(start)
    run_cfg = cfg if len(keep) == len(cfg.streams) else cfg.model_copy(update={"streams": keep})
    return Resumption(run_cfg, tuple(first), skipped)


def _all_logged(mark: dict[str, Any], last: int) -> bool:
    """The log holds what the completed run logged: up to its last logged frame (the frames
    after it may have been passed over by a rate, keyframes only or a motion gate)."""
    if mark.get("last_seq") is not None:
        return last >= int(mark["last_seq"])
    return last + 1 >= int(mark.get("next_seq", 0))


def _file_state(cfg: Config, s: StreamConfig, name: str, last: Any) -> str:
    """Why a file stream's log ``name`` (the stream's, or a zone's) needs no run ('' when it
    does); records which file the log is of."""
    try:
        ident = source_identity(s.source)
    except OSError:
        return ""  # the preflight names the missing file
    mark = read_mark(cfg.output.dir, name)
    same = mark is not None and all(mark.get(k) == ident[k] for k in _SAME_FILE)
    if mark is not None and not same and last is not None:
        raise InputError(f"streams.{s.name}: {log_path(cfg.output, name)} holds the labels of another file or "
                         f"another version of {mark.get('source')}; use another output.dir, or --overwrite to "
                         f"start the log afresh")
    if same and mark.get("complete") and last is not None and _all_logged(mark, last):
        return f"{log_path(cfg.output, name)} already holds every frame of {s.source} " \
               f"({max(last + 1, int(mark.get('next_seq', 0)))} frames)"
    if not same:
        try:
            write_mark(cfg.output.dir, name, {**ident, "complete": False})
        except OSError:
            pass  # the preflight reports an unwritable output.dir
    return ""
