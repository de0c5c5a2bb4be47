"""Sinks: per-frame label logs (JSONL, CSV), flushed line by line, and the null sink."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Optional

from videoclf.stages.outputs.appendlog import AppendLog, DiskFull
from videoclf.core.errors import ResourceError
from videoclf.stages.outputs.labellog import csv_header, day_reader, format_line, label_record, write_mark
from videoclf.core.records import EndOfStream, Result
from videoclf.core.histogram import Histogram
from videoclf.core.sinkstats import LabelLogStats, SinkStats, StreamStats
from videoclf.core.contract import STAGES, StageBase
from videoclf.stages.outputs.retention import Housekeeper
from videoclf.stages.outputs.smoothing import Smoother

log = logging.getLogger(__name__)

DISK_RETRY_S = 1.0  # a full disk is tried again this often


@dataclass(frozen=True)
class SinkConfig:
    dir: str
    streams: tuple[str, ...]
    top_k: int = 3
    random_weights: bool = False
    append: bool = True  # False: --overwrite, the first generation starts each log afresh
    # per stream, the identity of a file source (path, size, mtime) recorded when its log is
    # complete; None for live sources
    sources: tuple[Optional[dict], ...] = ()
    retention: Any = None  # output.retention (stages/outputs/retention.py applies it)
    min_free: int = 0  # output.min_free, bytes
    smooth: tuple[Any, ...] = ()  # per stream: its SmoothOptions, None where it keeps its raw labels only


class StreamTally:
    """What the sink measures per stream: counts, timing and latency histograms."""

    def __init__(self) -> None:
        self.frames = 0
        self.last_seq: int | None = None
        self.first_decoded: float | None = None
        self.last_written: float | None = None
        self.end_reason: str | None = None
        self.e2e = Histogram()
        self.decode = Histogram()
        self.infer = Histogram()
        self.top: tuple[tuple[str, float], ...] = ()  # the latest frame's labels (MQTT state, web view)

    def add(self, r: Result, now: float) -> None:
        self.frames += 1
        self.top = tuple(r.top)
        self.last_seq = r.frame.seq
        if self.first_decoded is None:
            self.first_decoded = r.frame.t_decoded
        self.last_written = now
        self.e2e.add((now - r.frame.t_decoded) * 1000)
        self.decode.add(r.frame.decode_ms)
        self.infer.add(r.infer_ms)

    def snapshot(self, stream: int, name: str) -> StreamStats:
        span = (self.last_written - self.first_decoded) if self.frames > 1 else None
        # the wall clock from the monotonic one at each snapshot, not at every frame
        at = None if self.last_written is None else time.time() - (time.monotonic() - self.last_written)
        return StreamStats(stream=stream, name=name, frames=self.frames, last_seq=self.last_seq, span_s=span,
                           last_frame_at=at,
                           end=self.end_reason, top=self.top, e2e_ms=self.e2e.copy(), decode_ms=self.decode.copy(),
                           infer_ms=self.infer.copy())


class _LabelLogSink(StageBase):
    fmt = ""  # jsonl | csv: the label-log format (videoclf.stages.outputs.labellog), also the file suffix

    def __init__(self, cfg: SinkConfig) -> None:
        self.cfg = cfg
        self.files: dict[int, AppendLog] = {}
        self.tally = [StreamTally() for _ in cfg.streams]
        self.repaired = 0  # logs whose torn last line (a killed run) was cut at open
        self.disk_full_pauses = 0
        self.disk_full_since: Optional[float] = None
        self.keeper: Optional[Housekeeper] = None
        self.smoothers: dict[int, Smoother] = {}  # per smoothing stream; empty at every start (smoothing.py)

    def smoothing(self, stream: int) -> Any:
        return self.cfg.smooth[stream] if stream < len(self.cfg.smooth) else None

    def prepare(self, r: Result) -> Result:
        """``r`` with its stream's smoothed top-k, where the stream smooths its labels."""
        s = r.frame.stream
        opts = self.smoothing(s)
        if opts is None:
            return r
        sm = self.smoothers.get(s)
        if sm is None:
            sm = self.smoothers[s] = Smoother(opts, self.cfg.top_k)
        return replace(r, smoothed=sm.update(r.top))

    def setup(self) -> None:
        try:
            os.makedirs(self.cfg.dir, exist_ok=True)
            self.keeper = Housekeeper(self.cfg.dir, self.cfg.streams, self.fmt, self.cfg.retention,
                                      self.cfg.min_free)
            for i in range(len(self.cfg.streams)):
                self._open(i, truncate=not self.cfg.append)
        except OSError as exc:
            raise ResourceError(f"output.dir {self.cfg.dir}: cannot write ({exc.strerror or exc})") from exc

    def _open(self, i: int, truncate: bool) -> None:
        name = self.cfg.streams[i]
        self.files[i] = AppendLog(os.path.join(self.cfg.dir, f"{name}.{self.fmt}"), self.header(i),
                                  day_of_line=day_reader(self.fmt)).open(truncate=truncate)
        self.repaired += self.files[i].repaired_bytes > 0

    def add_stream(self, stream: int, config: Any) -> None:
        """A stream added (or changed) while the run goes on: its log is opened for appending
        (a stream added to a running run never truncates what its log holds)."""
        self.cfg = config
        self.tally.extend(StreamTally() for _ in range(stream + 1 - len(self.tally)))
        self.smoothers.pop(stream, None)  # a changed stream smooths afresh, with its new options
        if self.keeper is not None:
            self.keeper.add_stream(config.streams[stream])
        if stream not in self.files:
            try:
                self._open(stream, truncate=False)
            except OSError as exc:
                raise ResourceError(f"output.dir {self.cfg.dir}: cannot write ({exc.strerror or exc})") from exc

    def header(self, stream: int) -> Optional[str]:
        return csv_header(self.cfg.top_k, self.smoothing(stream) is not None) if self.fmt == "csv" else None

    def line(self, r: Result) -> str:
        f = r.frame
        return format_line(self.fmt, label_record(self.cfg.streams[f.stream], f.seq, f.pts, f.time, r.top,
                                                  self.cfg.random_weights, r.smoothed[0] if r.smoothed else None))

    def write(self, r: Result, frame: Any = None) -> None:
        line = self.line(r)
        f = self.files[r.frame.stream]
        while True:
            try:
                f.write(line, r.frame.time)
                break
            except DiskFull:
                # the line is not lost: wait for space (the classifier keeps what follows, a
                # file waits for its slots, a camera drops and counts)
                self._wait_for_space()
            except OSError as exc:
                raise ResourceError(f"output.dir {self.cfg.dir}: writing the label log failed "
                                    f"({exc.strerror or exc})") from exc
        if self.disk_full_since is not None:
            log.warning("output.dir %s: space is back; label logs go on (%.0f s paused)", self.cfg.dir,
                        time.monotonic() - self.disk_full_since)
            self.disk_full_since = None
        now = time.monotonic()
        self.tally[r.frame.stream].add(r, now)
        if self.keeper is not None:
            self.keeper.tick(now)

    def _wait_for_space(self) -> None:
        ctrl = self.ctrl
        if ctrl is not None and (ctrl.stop.is_set() or ctrl.drain.is_set()):
            # the run ends while the disk is still full: what is logged stays whole; say what is not
            raise ResourceError(f"output.dir {self.cfg.dir}: No space left on device; the label logs hold every "
                                f"frame up to the full disk, the frames still in flight were not written")
        if self.disk_full_since is None:
            self.disk_full_since = time.monotonic()
            self.disk_full_pauses += 1
            log.warning("output.dir %s: the disk is full; label logs pause until space is freed "
                        "(no line is lost)", self.cfg.dir)
        time.sleep(DISK_RETRY_S)

    def end(self, eos: EndOfStream) -> None:
        self.tally[eos.stream].end_reason = eos.reason
        f = self.files.pop(eos.stream, None)
        if f:
            f.close()
        ident = self.cfg.sources[eos.stream] if self.cfg.sources else None
        if ident is not None and eos.reason == "end" and f is not None:
            # the file's every frame is logged: a later run of it classifies nothing again
            try:
                # next_seq: the file's frames; last_seq: the last one logged (with a rate, keyframes
                # only or a motion gate, the frames after it were passed over)
                write_mark(self.cfg.dir, self.cfg.streams[eos.stream], {**ident, "complete": True,
                                                                         "next_seq": eos.frames,
                                                                         "last_seq": self.tally[eos.stream].last_seq})
            except OSError as exc:
                log.warning("output.dir %s: cannot record that stream %s is complete: %s", self.cfg.dir,
                            self.cfg.streams[eos.stream], exc)

    def stats(self) -> SinkStats:
        return SinkStats(streams=tuple(t.snapshot(i, self.cfg.streams[i]) for i, t in enumerate(self.tally)),
                         labels=LabelLogStats(repaired_tails=self.repaired, disk_full_pauses=self.disk_full_pauses,
                                              paused=self.disk_full_since is not None),
                         retention=self.keeper.retention_stats() if self.keeper else None,
                         disk=self.keeper.disk_stats() if self.keeper else None)

    def teardown(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()


@STAGES.register("sink.jsonl")
class JsonlSink(_LabelLogSink):
    fmt = "jsonl"


@STAGES.register("sink.csv")
class CsvSink(_LabelLogSink):
    fmt = "csv"


@STAGES.register("sink.null")
class NullSink(_LabelLogSink):
    """Measures like the others but writes nothing: for benchmarks."""

    def setup(self) -> None:
        pass

    def end(self, eos: EndOfStream) -> None:
        self.tally[eos.stream].end_reason = eos.reason

    def write(self, r: Result, frame: Any = None) -> None:
        self.tally[r.frame.stream].add(r, time.monotonic())
