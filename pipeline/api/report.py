"""The run's report as typed, frozen objects: the public view of report.json's data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from videoclf.core.errors import VideoclfError


@dataclass(frozen=True)
class StreamReport:
    name: str
    source: str
    frames: int  # frames classified and written
    decoded: int
    dropped: int  # frames the pipeline dropped (a camera's policy), all causes
    dropped_by: Mapping[str, int]
    sustained_fps: float  # computed once, by the report
    end: Optional[str]  # end | limit | stopped | error
    results_dropped: int = 0  # results the API's queue dropped for a slow consumer
    latency_ms: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.sustained_fps


@dataclass(frozen=True)
class Report:
    streams: Mapping[str, StreamReport]
    elapsed_s: float
    exit_status: int  # 0 ok, 1 runtime failure, 2 bad config or input (the CLI's exit code)
    interrupted: bool  # stopped early (stop(), SIGINT, SIGTERM)
    outputs: Mapping[str, Any]
    results_dropped: int  # the API queue's drops, all streams
    data: Mapping[str, Any]  # the report as report.json holds it
    error: Optional[VideoclfError] = None
    path: Optional[str] = None  # report.json, when written

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams.values())

    @classmethod
    def from_data(cls, data: Mapping[str, Any], exit_status: int, error: Optional[VideoclfError] = None,
                  path: Optional[str] = None) -> "Report":
        api = data.get("api") or {}
        drops = api.get("dropped") or {}
        streams = {name: StreamReport(name, s["source"], s["frames"], s["decoded"], s["dropped"],
                                      dict(s["dropped_by"]), s["sustained_fps"], s["end"], drops.get(name, 0),
                                      dict(s.get("latency_ms") or {}))
                   for name, s in data["streams"].items()}
        return cls(streams, data["elapsed_s"], exit_status, bool(data.get("interrupted")), dict(data["outputs"]),
                   sum(drops.values()), data, error, path)
