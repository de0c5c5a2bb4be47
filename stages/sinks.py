"""Sinks: per-frame label logs (JSONL, CSV), flushed line by line, and the null sink."""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from typing import Any, IO

from pipeline.errors import ResourceError
from pipeline.messages import EndOfStream, Result
from pipeline.metrics import Histogram
from pipeline.stage import STAGES, StageBase


@dataclass(frozen=True)
class SinkConfig:
    dir: str
    streams: tuple[str, ...]
    top_k: int = 3
    random_weights: bool = False
    append: bool = False  # after a restart: keep what the crashed generation wrote


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
        self.top: list = []  # the latest frame's labels (MQTT state, web view)

    def add(self, r: Result, now: float) -> None:
        self.frames += 1
        self.top = list(r.top)
        self.last_seq = r.frame.seq
        if self.first_decoded is None:
            self.first_decoded = r.frame.t_decoded
        self.last_written = now
        self.e2e.add((now - r.frame.t_decoded) * 1000)
        self.decode.add(r.frame.decode_ms)
        self.infer.add(r.infer_ms)

    def to_dict(self) -> dict[str, Any]:
        span = (self.last_written - self.first_decoded) if self.frames > 1 else None
        return {"frames": self.frames, "last_seq": self.last_seq, "span_s": span, "end": self.end_reason, "top": self.top,
                "e2e_ms": self.e2e.to_dict(), "decode_ms": self.decode.to_dict(), "infer_ms": self.infer.to_dict()}


class _LabelLogSink(StageBase):
    suffix = ""

    def __init__(self, cfg: SinkConfig) -> None:
        self.cfg = cfg
        self.files: dict[int, IO[str]] = {}
        self.tally = [StreamTally() for _ in cfg.streams]

    def setup(self) -> None:
        try:
            os.makedirs(self.cfg.dir, exist_ok=True)
            for i, name in enumerate(self.cfg.streams):
                # line-buffered: every frame's line reaches the file as it is written
                self.files[i] = open(os.path.join(self.cfg.dir, name + self.suffix), "a" if self.cfg.append else "w",
                                     buffering=1, encoding="utf-8")
                self._start(i)
        except OSError as exc:
            raise ResourceError(f"output.dir {self.cfg.dir}: cannot write ({exc.strerror or exc})") from exc

    def _start(self, i: int) -> None:
        pass

    def record(self, r: Result) -> dict[str, Any]:
        f = r.frame
        rec = {"stream": self.cfg.streams[f.stream], "frame": f.seq,
               "pts": None if f.pts is None else round(f.pts, 6), "time": round(f.time, 6),
               "top": [{"label": lbl, "score": s} for lbl, s in r.top]}
        if self.cfg.random_weights:
            rec["weights"] = "none (random init)"
        return rec

    def write(self, r: Result, frame: Any = None) -> None:
        try:
            self._write(r)
        except OSError as exc:
            raise ResourceError(f"output.dir {self.cfg.dir}: writing the label log failed ({exc.strerror or exc})") from exc
        self.tally[r.frame.stream].add(r, time.monotonic())

    def _write(self, r: Result) -> None:
        raise NotImplementedError

    def end(self, eos: EndOfStream) -> None:
        self.tally[eos.stream].end_reason = eos.reason
        f = self.files.pop(eos.stream, None)
        if f:
            f.close()

    def stats(self) -> dict[str, Any]:
        return {"streams": {self.cfg.streams[i]: t.to_dict() for i, t in enumerate(self.tally)}}

    def teardown(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()


@STAGES.register("sink.jsonl")
class JsonlSink(_LabelLogSink):
    suffix = ".jsonl"

    def _write(self, r: Result) -> None:
        self.files[r.frame.stream].write(json.dumps(self.record(r), separators=(",", ":")) + "\n")


@STAGES.register("sink.csv")
class CsvSink(_LabelLogSink):
    suffix = ".csv"

    def __init__(self, cfg: SinkConfig) -> None:
        super().__init__(cfg)
        self.writers: dict[int, Any] = {}

    def _start(self, i: int) -> None:
        self.writers[i] = csv.writer(self.files[i])
        if self.cfg.append:  # the header is already there
            return
        ranks = [f"{c}{j + 1}" for j in range(self.cfg.top_k) for c in ("label", "score")]
        self.writers[i].writerow(["stream", "frame", "pts", "time", *ranks])

    def _write(self, r: Result) -> None:
        rec = self.record(r)
        self.writers[r.frame.stream].writerow(
            [rec["stream"], rec["frame"], rec["pts"], rec["time"], *(v for t in r.top for v in t)])


@STAGES.register("sink.null")
class NullSink(_LabelLogSink):
    """Measures like the others but writes nothing: for benchmarks."""

    def setup(self) -> None:
        pass

    def _write(self, r: Result) -> None:
        pass
