"""Prometheus /metrics from the stats the supervisor already aggregates (no extra IPC).

A custom collector turns the latest per-stage stats into metric families at scrape time,
so the pipeline pays nothing between scrapes."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from videoclf.core.stats import _BASE, _MIN_MS, RunStats

# seconds; our internal histograms are finer (2 % log buckets) and are folded into these
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def fold(hist: dict[str, Any]) -> tuple[list[tuple[str, float]], float]:
    """Internal log-bucket histogram (ms) → cumulative Prometheus buckets (s) and a sum."""
    counts = {int(b): c for b, c in (hist.get("counts") or {}).items()}
    cum = [0] * len(BUCKETS_S)
    total = 0.0
    for b, c in counts.items():
        upper_ms = _MIN_MS if b == 0 else _MIN_MS * _BASE ** b
        total += c * (_MIN_MS if b == 0 else _MIN_MS * _BASE ** (b - 0.5)) / 1000
        for k, le in enumerate(BUCKETS_S):
            if upper_ms / 1000 <= le:
                cum[k] += c
    buckets = [(str(le), float(n)) for le, n in zip(BUCKETS_S, cum)] + [("+Inf", float(hist.get("n", 0)))]
    return buckets, total


class StatsCollector(Collector):
    def __init__(self, streams: list[str], stats: Callable[[], RunStats]) -> None:
        self.streams = streams
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self.stats().snapshot()
        live = stats.sink.get("live") or {}
        fam = {
            "frames": CounterMetricFamily("videoclf_frames", "frames classified and written", labels=["stream"]),
            "decoded": CounterMetricFamily("videoclf_decoded_frames", "frames decoded", labels=["stream"]),
            "dropped": CounterMetricFamily("videoclf_dropped_frames", "frames never classified (no free slot, or stale on a live stream)",
                                           labels=["stream"]),
            "reconnects": CounterMetricFamily("videoclf_reconnects", "source reconnections", labels=["stream"]),
            "fps": GaugeMetricFamily("videoclf_processed_fps", "frames per second written, last ~2 s (else run mean)",
                                     labels=["stream"]),
        }
        lat = HistogramMetricFamily("videoclf_latency_seconds", "per-frame latency by kind (e2e, decode, infer)",
                                    labels=["stream", "kind"])
        for i, name in enumerate(self.streams):
            t = stats.tally(name)
            dec = stats.decoder(i)
            fam["frames"].add_metric([name], t.get("frames", 0))
            fam["decoded"].add_metric([name], dec.get("items", 0))
            fam["dropped"].add_metric([name], stats.dropped(i))
            fam["reconnects"].add_metric([name], dec.get("reconnects", 0))
            fps = (live.get(name) or {}).get("fps")
            if fps is None and t.get("span_s"):
                fps = (t["frames"] - 1) / t["span_s"]
            fam["fps"].add_metric([name], fps or 0.0)
            for kind in ("e2e", "decode", "infer"):
                buckets, total = fold(t.get(f"{kind}_ms") or {})
                lat.add_metric([name, kind], buckets, total)
        busy = CounterMetricFamily("videoclf_stage_busy_seconds", "time each stage spent working", labels=["stage"])
        items = CounterMetricFamily("videoclf_stage_items", "items each stage processed", labels=["stage"])
        frac = GaugeMetricFamily("videoclf_stage_busy_ratio", "busy time / wall time per stage", labels=["stage"])
        for title, d in stats.stages().items():
            busy.add_metric([title], d.get("busy_s", 0.0))
            items.add_metric([title], d.get("items", 0))
            frac.add_metric([title], d.get("busy_fraction") or 0.0)
        yield from _outputs(stats.sink)
        up = GaugeMetricFamily("videoclf_scrape_timestamp_seconds", "time of this scrape")
        up.add_metric([], time.time())
        yield from (*fam.values(), lat, busy, items, frac, up)


def _outputs(sink: dict[str, Any]) -> Iterator[Any]:
    """Disk use: retention's deletions, the free-space floor and its pauses."""
    kept = sink.get("retention") or {}
    deleted = CounterMetricFamily("videoclf_retention_deleted_files", "files deleted by output.retention",
                                  labels=["kind"])
    freed = CounterMetricFamily("videoclf_retention_deleted_bytes", "bytes deleted by output.retention",
                                labels=["kind"])
    for kind, n in (kept.get("deleted_files") or {}).items():
        deleted.add_metric([kind], n)
        freed.add_metric([kind], (kept.get("deleted_bytes") or {}).get(kind, 0))
    disk = sink.get("disk") or {}
    free = GaugeMetricFamily("videoclf_output_free_bytes", "free space of output.dir")
    if disk.get("free_bytes") is not None:
        free.add_metric([], disk["free_bytes"])
    low = GaugeMetricFamily("videoclf_output_paused", "1 while an output is paused for space", labels=["output"])
    low.add_metric(["video"], 1.0 if disk.get("low") else 0.0)
    low.add_metric(["labels"], 1.0 if (sink.get("labels") or {}).get("paused") else 0.0)
    pauses = CounterMetricFamily("videoclf_output_pauses", "times an output paused for space", labels=["output"])
    pauses.add_metric(["video"], disk.get("pauses", 0))
    pauses.add_metric(["labels"], (sink.get("labels") or {}).get("disk_full_pauses", 0))
    yield from (deleted, freed, free, low, pauses)


def start_metrics(host: str, port: int, streams: list[str], stats: Callable[[], RunStats]) -> Any:
    """Serve /metrics in a daemon thread; returns the server (call .shutdown())."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(streams, stats))
    server, _thread = start_http_server(port, host, registry=registry)
    return server
