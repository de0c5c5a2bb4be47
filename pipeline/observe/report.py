"""Run report (report.json + terminal table) and the live progress line."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional

from videoclf.config.schema import Config, redact
from videoclf.config.zones import logged_streams
from videoclf.core.errors import VideoclfError
from videoclf.core.runstats import RunStats
from videoclf.core.sinkstats import MqttStats, StreamStats
from videoclf.core.stats import ClassifierStats, DecoderStats, LiveStats

# live sources jitter around their nominal rate; within 3 % of the target counts as meeting it
TARGET_TOLERANCE = 0.97


def build_report(cfg: Config, stats: RunStats, elapsed: float, error: Optional[VideoclfError],
                 error_stage: str, interrupted: bool = False) -> dict[str, Any]:
    sink, classify = stats.sink, stats.classifier
    model = dict(classify.model or {"backbone": cfg.model.backbone, "weights": cfg.model.weights,
                                    "device": cfg.model.device})
    # a row per logged stream: a stream's zones each (decoded, dropped: their stream's)
    streams = {lg.name: _stream_json(cfg.streams[lg.stream], stats.stream(i), stats.decoder(i), stats, cfg.target_fps)
               for i, lg in enumerate(logged_streams(cfg.streams))}
    stages = {t: {**d.counts.to_json(), **({"batches": d.batches} if isinstance(d, ClassifierStats) else {})}
              for t, d in stats.stages().items()}
    bottleneck = max(stages, key=lambda t: stages[t]["busy_fraction"] or 0.0) if stages else None
    return {
        "streams": streams,
        "target_fps": cfg.target_fps,
        "model": model,
        "random_weights": cfg.model.weights == "none",
        "elapsed_s": round(elapsed, 3),
        "started_at": round(time.time() - elapsed, 3),
        "stages": stages,
        "outputs": sink.outputs_json(),
        "bottleneck": bottleneck,
        "alerts": sink.alerts.to_json() if sink.alerts is not None else None,
        "interrupted": interrupted,
        "error": None if error is None else {"stage": error_stage, "kind": type(error).__name__,
                                             "message": redact(str(error))},
    }


def _stream_json(s: Any, tally: StreamStats, dec: DecoderStats, stats: RunStats, target_fps: float) -> dict[str, Any]:
    """One stream's section of report.json."""
    i = tally.stream  # the logged stream's index (a zone's decoder and drops: its stream's, RunStats)
    fps = tally.fps
    out: dict[str, Any] = {
        "source": redact(s.source),
        "frames": tally.frames,
        "decoded": dec.counts.decoded or dec.counts.items,
        "dropped": stats.dropped(i),
        "dropped_by": stats.dropped_by(i).to_json(),
        "sustained_fps": fps,
        "meets_target": meets_target(s, fps, dec, target_fps),
        "latency_ms": tally.e2e_ms.summary(),
        "latency_histogram_ms": tally.e2e_ms.buckets(),
        "decode_ms": tally.decode_ms.summary(),
        "infer_ms": tally.infer_ms.summary(),
        "decode_errors": dec.decode_errors,
        "end": tally.end,
        "input": dict(dec.source) if dec.source is not None else None,
    }
    if not s.every_frame:  # what the stream asked for, and the frames it passed over
        out["classify"] = {"fps": s.classify.fps, "keyframes": s.classify.keyframes, "motion": s.gate.motion is not None}
        out["decoded_fps"] = decoded_fps(dec)
        out["skipped"] = {"rate": dec.counts.skipped - dec.counts.undecoded, "keyframes": dec.counts.undecoded,
                          "motion": dec.counts.gated}
    if s.is_live:  # reconnect bookkeeping of videoclf.stages.decode.live
        live = dec.live or LiveStats()
        if live.transport:
            out["transport"] = live.transport
        out.update({"input_fps": live.input_fps, "reconnects": live.reconnects, "disconnects": live.disconnects,
                    "downtime_s": live.downtime_s, "connect_attempts": live.connect_attempts,
                    "auth_failures": live.auth_failures, "connected": live.connected, "gave_up": live.gave_up})
        if dec.last_error:
            out["last_error"] = redact(dec.last_error)
    if dec.decode_errors:
        out["damage"] = dec.last_error
    if tally.video is not None:  # annotated video files of this stream and the frames they hold
        out["video"] = tally.video.to_json()
    return out


def decoded_fps(dec: DecoderStats) -> float:
    """Frames out of the decoder a second (classified or passed over), over its working time."""
    c = dec.counts
    return round((c.decoded or c.items) / c.wall_s, 2) if c.wall_s > 0 else 0.0


def seen_fps(dec: DecoderStats) -> float:
    """The source's frames a second that the decoder went through: decoded, or passed over
    undecoded (keyframes only)."""
    c = dec.counts
    return round(((c.decoded or c.items) + c.undecoded) / c.wall_s, 2) if c.wall_s > 0 else 0.0


def meets_target(s: Any, fps: float, dec: DecoderStats, target_fps: float) -> bool:
    """Judged against what the stream asked for. Every frame: classified at ``target_fps``. A
    classification rate on a camera: classified at that rate (or the camera's, if lower), and
    decoding keeping up with the camera. Otherwise (a rate on a file, keyframes only, a motion
    gate) the frames to choose from must come at ``target_fps`` (a camera's own rate, if
    lower): the decoder keeps up with the source."""
    if s.every_frame:
        return fps >= target_fps * TARGET_TOLERANCE
    keeps_up = seen_fps(dec) >= target_fps * TARGET_TOLERANCE
    if s.is_live:
        camera = dec.live.input_fps if dec.live is not None and dec.live.input_fps else target_fps
        keeps_up = seen_fps(dec) >= min(camera, target_fps) * TARGET_TOLERANCE
        if s.classify.fps and s.gate.motion is None and not s.classify.keyframes:
            return keeps_up and fps >= min(s.classify.fps, camera) * TARGET_TOLERANCE
    return keeps_up


def mqtt_json(state: Optional[MqttStats], events: Optional[MqttStats]) -> Optional[dict[str, Any]]:
    """report.json's ``mqtt``: the run's client, its state messages and (with alerts) its events."""
    if state is None:
        return None
    return {"state": state.to_json(), **({"events": events.to_json()} if events is not None else {})}


def write_report(report: dict[str, Any], out_dir: str) -> str:
    """``report.json`` is the latest run's; every run's report is also kept, never replaced,
    as ``reports/<local start time>.json``."""
    path = os.path.join(out_dir, "report.json")
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        _keep_copy(tmp, os.path.join(out_dir, "reports"), report.get("started_at"))
    except OSError:
        if os.path.exists(tmp):  # a half-written temporary file helps nobody (and fills the disk)
            os.unlink(tmp)
        raise
    os.replace(tmp, path)  # a reader never sees half a report
    return path


def _keep_copy(src: str, folder: str, started: Optional[float]) -> None:
    os.makedirs(folder, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(started or time.time()))
    for n in range(1000):
        dest = os.path.join(folder, f"{stamp}{f'-{n}' if n else ''}.json")
        try:
            os.link(src, dest)  # never onto an existing file
            return
        except FileExistsError:
            continue


def print_summary(report: dict[str, Any], file: Any = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file or sys.stdout, highlight=False)
    m = report["model"]
    title = escape(f"videoclf: {m.get('backbone')} on {m.get('device')} · weights {m.get('weights')}")
    table = Table(title=title, title_justify="left")
    for col in ("stream", "frames", "dropped", "FPS", f"≥{report['target_fps']:g}", "p50 ms", "p95 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col == "stream" else "right")
    for name, s in report["streams"].items():
        lat = s["latency_ms"]
        table.add_row(escape(name), str(s["frames"]), str(s["dropped"]), f"{s['sustained_fps']:.1f}",
                      "yes" if s["meets_target"] else "NO", *(f"{lat[k]:.0f}" if lat[k] is not None else "-"
                                                            for k in ("p50", "p95", "p99")),
                      str(s["decode_errors"]))
    if report["streams"]:
        console.print(table)
    for name, why in (report.get("skipped") or {}).items():
        console.print(f"{escape(name)}: not classified again: {escape(why)} (--overwrite to classify it again)",
                      soft_wrap=True)
    if report.get("bottleneck"):
        st = report["stages"][report["bottleneck"]]
        console.print(f"bottleneck: {escape(report['bottleneck'])} (busy {100 * (st['busy_fraction'] or 0):.0f} %)")
    if report["random_weights"] and report["streams"]:
        console.print("[yellow]weights: none — random init, labels are meaningless (speed test)[/yellow]")


def _live_status(stats: RunStats, index: int) -> str:
    live = stats.decoder(index).live
    if live is None:
        return ""
    state = "" if live.connected else ", DOWN"
    return f" ({live.input_fps:.1f} fps in, {stats.dropped(index)} dropped, {live.reconnects} reconnects{state})"


class Progress:
    """On a terminal: file runs show a bar per stream (frames done/total, FPS, elapsed, ETA);
    runs with a live camera show a table, one row per stream (state, FPS in/out, drops,
    reconnects, last label). Elsewhere one plain line every 10 s; ``-q`` silences both."""

    def __init__(self, cfg: Config, enabled: bool = True, max_frames: Optional[int] = None) -> None:
        self.cfg = cfg
        self.names = [lg.name for lg in logged_streams(cfg.streams)]  # a stream's zones: one each
        self.max_frames = max_frames or cfg.max_frames
        self.loops = {lg.name: cfg.streams[lg.stream].loop for lg in logged_streams(cfg.streams)}
        self.live_run = any(s.is_live for s in cfg.streams)
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._last_plain = time.monotonic()
        self._live: Any = None
        self._table: Any = None
        if self.enabled and self.live_run:
            from rich.console import Console
            from rich.live import Live

            self._table = Live(self._render(RunStats(self.names)), console=Console(stderr=True), refresh_per_second=2, transient=True)
            self._table.start()
        elif self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._live = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[fps]} fps"), TimeElapsedColumn(),
                                      TextColumn("ETA"), TimeRemainingColumn(), transient=True)
            self._tasks = {n: self._live.add_task(n, total=None, fps="-") for n in self.names}
            self._live.start()

    def _render(self, stats: RunStats) -> Any:
        from rich.markup import escape
        from rich.table import Table

        from videoclf.observe.web import stream_rows

        table = Table(title=f"videoclf · {time.monotonic() - self.t0:.0f} s", title_justify="left")
        for col in ("stream", "state", "fps in", "fps out", "frames", "dropped", "reconnects", "label"):
            # numbers and headers never wrap; a long label is cut on a narrow terminal
            table.add_column(col, justify="left" if col in ("stream", "state", "label") else "right", no_wrap=True,
                             min_width=len(col), overflow="ellipsis")
        for r in stream_rows(self.cfg, stats, pictures=False):
            top = r.top
            table.add_row(escape(r.name), escape(r.status), f"{r.input_fps:.1f}", f"{r.fps:.1f}",
                          str(r.frames), str(r.dropped), str(r.reconnects),
                          escape(f"{top[0][0]} {top[0][1]:.2f}") if top else "")
        return table

    def update(self, stats: RunStats) -> None:
        now = time.monotonic()
        if self._table is not None:
            self._table.update(self._render(stats))
        elif self._live is not None:
            for i, n in enumerate(self.names):
                t = stats.stream(i)
                fps = f"{t.fps:.1f}" if t.span_s else "-"
                src = stats.decoder(i).source or {}
                known = [x for x in (None if self.loops[n] else src.get("frames"), self.max_frames) if x]
                self._live.update(self._tasks[n], completed=t.frames, fps=fps, total=min(known) if known else None)
        elif now - self._last_plain >= 10 and stats.sink.streams:
            self._last_plain = now
            parts = [f"{n} {stats.stream(i).frames} frames{_live_status(stats, i)}" for i, n in enumerate(self.names)]
            print(f"[{now - self.t0:6.0f}s] " + ", ".join(parts), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._table is not None:
            self._table.stop()

