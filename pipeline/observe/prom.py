"""Prometheus /metrics from the stats the supervisor already aggregates (no extra IPC).

A custom collector turns the latest per-stage stats into metric families at scrape time,
so the pipeline pays nothing between scrapes."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from videoclf.core.histogram import Histogram
from videoclf.core.runstats import RunStats
from videoclf.core.sinkstats import DiskStats, LabelLogStats, RetentionStats, SinkStats, StreamStats
from videoclf.core.stats import DecoderStats

# seconds; our internal histograms are finer (2 % log buckets) and are folded into these
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def fold(hist: Histogram) -> tuple[list[tuple[str, float]], float]:
    """Internal log-bucket histogram (ms) → cumulative Prometheus buckets (s) and a sum."""
    cum = [0] * len(BUCKETS_S)
    total = 0.0
    for b, c in hist.counts.items():
        total += c * hist.mid_ms(b) / 1000
        for k, le in enumerate(BUCKETS_S):
            if hist.upper_ms(b) / 1000 <= le:
                cum[k] += c
    buckets = [(str(le), float(n)) for le, n in zip(BUCKETS_S, cum)] + [("+Inf", float(hist.n))]
    return buckets, total


class StatsCollector(Collector):
    def __init__(self, streams: list[str], stats: Callable[[], RunStats]) -> None:
        self.streams = streams
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self.stats().snapshot()
        fam = {
            "frames": CounterMetricFamily("videoclf_frames", "frames classified and written", labels=["stream"]),
            "decoded": CounterMetricFamily("videoclf_decoded_frames", "frames decoded", labels=["stream"]),
            "dropped": CounterMetricFamily("videoclf_dropped_frames", "frames never classified (no free slot, or stale on a live stream)",
                                           labels=["stream"]),
            "skipped": CounterMetricFamily("videoclf_skipped_frames", "frames not classified by choice: the stream's "
                                           "classification rate (rate), keyframes only (keyframes, never decoded) or "
                                           "its motion gate (motion)", labels=["stream", "reason"]),
            "reconnects": CounterMetricFamily("videoclf_reconnects", "source reconnections", labels=["stream"]),
            "fps": GaugeMetricFamily("videoclf_processed_fps", "frames per second written, last ~2 s (else run mean)",
                                     labels=["stream"]),
        }
        lat = HistogramMetricFamily("videoclf_latency_seconds", "per-frame latency by kind (e2e, decode, infer)",
                                    labels=["stream", "kind"])
        names = list(stats.names) or self.streams  # streams added while the run goes on included
        for i, name in enumerate(names):
            t, dec = stats.stream(i), stats.decoder(i)
            fam["frames"].add_metric([name], t.frames)
            c = dec.counts
            fam["decoded"].add_metric([name], c.decoded or c.items)
            for reason, n in (("rate", c.skipped - c.undecoded), ("keyframes", c.undecoded), ("motion", c.gated)):
                fam["skipped"].add_metric([name, reason], n)
            fam["dropped"].add_metric([name], stats.dropped(i))
            fam["reconnects"].add_metric([name], dec.live.reconnects if dec.live else 0)
            fam["fps"].add_metric([name], t.fps_now)
            for kind, hist in (("e2e", t.e2e_ms), ("decode", t.decode_ms), ("infer", t.infer_ms)):
                buckets, total = fold(hist)
                lat.add_metric([name, kind], buckets, total)
        busy = CounterMetricFamily("videoclf_stage_busy_seconds", "time each stage spent working", labels=["stage"])
        items = CounterMetricFamily("videoclf_stage_items", "items each stage processed", labels=["stage"])
        frac = GaugeMetricFamily("videoclf_stage_busy_ratio", "busy time / wall time per stage", labels=["stage"])
        for title, d in stats.stages().items():
            busy.add_metric([title], d.counts.busy_s)
            items.add_metric([title], d.counts.items)
            frac.add_metric([title], d.counts.busy_fraction)
        yield from _streams(stats, names)
        yield from _outputs(stats.sink)
        up = GaugeMetricFamily("videoclf_scrape_timestamp_seconds", "time of this scrape")
        up.add_metric([], time.time())
        yield from (*fam.values(), lat, busy, items, frac, up)


def stream_up(tally: StreamStats, dec: DecoderStats) -> bool:
    """A stream delivers frames: a live camera while connected (not while reconnecting or
    given up), a file from its decoder's first report until it ends."""
    if tally.end is not None:
        return False
    if dec.live is not None:
        return dec.live.connected and not dec.live.gave_up
    return dec.counts.wall_s > 0


def _streams(stats: RunStats, names: list[str]) -> Iterator[Any]:
    """Each stream's state: up or not, and when its last frame was classified."""
    up = GaugeMetricFamily("videoclf_stream_up", "1 while a stream delivers frames (camera connected, file "
                           "decoding), 0 while a camera reconnects or was given up, or once a file ended",
                           labels=["stream"])
    last = GaugeMetricFamily("videoclf_stream_last_frame_timestamp_seconds",
                             "wall-clock time the stream's last classified frame was written", labels=["stream"])
    for i, name in enumerate(names):
        t = stats.stream(i)
        up.add_metric([name], 1.0 if stream_up(t, stats.decoder(i)) else 0.0)
        if t.last_frame_at is not None:  # no sample before the first frame
            last.add_metric([name], t.last_frame_at)
    yield from (up, last)


def _outputs(sink: SinkStats) -> Iterator[Any]:
    """Disk use: retention's deletions, the free-space floor and its pauses."""
    deleted = CounterMetricFamily("videoclf_retention_deleted_files", "files deleted by output.retention",
                                  labels=["kind"])
    freed = CounterMetricFamily("videoclf_retention_deleted_bytes", "bytes deleted by output.retention",
                                labels=["kind"])
    kept = sink.retention or RetentionStats()
    for kind, n in kept.deleted_files.items():
        deleted.add_metric([kind], n)
        freed.add_metric([kind], kept.deleted_bytes.get(kind, 0))
    disk, labels = sink.disk or DiskStats(), sink.labels or LabelLogStats()
    free = GaugeMetricFamily("videoclf_output_free_bytes", "free space of output.dir")
    if disk.free_bytes is not None:
        free.add_metric([], disk.free_bytes)
    low = GaugeMetricFamily("videoclf_output_paused", "1 while an output is paused for space", labels=["output"])
    low.add_metric(["video"], 1.0 if disk.low else 0.0)
    low.add_metric(["labels"], 1.0 if labels.paused else 0.0)
    pauses = CounterMetricFamily("videoclf_output_pauses", "times an output paused for space", labels=["output"])
    pauses.add_metric(["video"], disk.pauses)
    pauses.add_metric(["labels"], labels.disk_full_pauses)
    yield from (deleted, freed, free, low, pauses)


def start_metrics(host: str, port: int, streams: list[str], stats: Callable[[], RunStats]) -> Any:
    """Serve /metrics in a daemon thread; returns the server (call .shutdown())."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(streams, stats))
    server, _thread = start_http_server(port, host, registry=registry)
    return server
