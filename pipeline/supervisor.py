"""The supervisor: owns every segment and process of a run, from preflight to report.

Every stage process starts at once, so decoders import, open their files and connect to
their cameras while the model loads; no frame is classified before the model is ready (a
file waits for it, so its FPS is not diluted by model load; a live source discards what its
camera sends meanwhile and starts on fresh frames). Teardown is the reverse, with bounded joins: join → terminate → kill.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from pipeline.compose import Graph, build_graph, probe, ring_bytes
from pipeline.config import Config, redact
from pipeline.errors import ResourceError, SourceGaveUp, StageError, VideoclfError, error_from_event
from pipeline.messages import Event
from pipeline.metrics import stage_stats
from pipeline.report import Progress, build_report
from pipeline.restart import RestartPolicy
from pipeline.services import Services
from pipeline.shm import PoolOwner, check_free_space, new_run_id, remove_stale_segments
from pipeline.stage import Control, StageSpec, child_main

log = logging.getLogger("videoclf")

# model load on a cold cache can be slow; beyond this something is wrong (a stage that announces
# a longer one-time step gets its own limit; the variable is for very slow machines)
READY_TIMEOUT_S = float(os.environ.get("VIDEOCLF_READY_TIMEOUT_S", "300"))
DRAIN_GRACE_S = 2.0  # after a failure, time given to flush classified frames before stopping
JOIN_S = 3.0


@dataclass(frozen=True)
class RunOptions:
    max_frames: Optional[int] = None
    duration: Optional[float] = None
    sink: str = "auto"  # auto → the config's output.format; "null" for benchmarks
    progress: bool = True


@dataclass
class RunResult:
    report: dict[str, Any]
    exit_code: int
    error: Optional[VideoclfError] = None


@dataclass
class _State:
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # latest per stage title
    ready: set[str] = field(default_factory=set)
    slow: dict[str, tuple[float, str]] = field(default_factory=dict)  # stage → (ready deadline, what it does)
    done: set[str] = field(default_factory=set)
    error: Optional[VideoclfError] = None
    error_stage: str = ""
    interrupted: int = 0


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def check_output_dir(path: str) -> None:
    """The output directory, or the nearest existing parent it would be made in, must be writable."""
    probe_dir = os.path.abspath(path)
    while not os.path.exists(probe_dir):
        probe_dir = os.path.dirname(probe_dir)
    if not os.path.isdir(probe_dir):
        raise ResourceError(f"output.dir {path}: {probe_dir} is not a directory")
    if not os.access(probe_dir, os.W_OK):
        raise ResourceError(f"output.dir {path}: {probe_dir} is not writable")


def preflight(cfg: Config) -> None:
    """Checks that need no child process and change nothing: sources, weights path, output dir, /dev/shm."""
    for s in cfg.streams:
        if not s.is_live:
            probe(s.source)
    w = cfg.model.weights
    if w not in ("imagenet", "none") and not os.path.isfile(w):
        from pipeline.errors import InputError

        raise InputError(f"model.weights: weights file {w} not found")
    check_output_dir(cfg.output.dir)
    check_free_space(ring_bytes(cfg))


class Supervisor:
    def __init__(self, cfg: Config, opts: RunOptions) -> None:
        self.cfg = cfg
        self.opts = opts
        self.ctx = mp.get_context("spawn")
        self.run_id = new_run_id()
        self.state = _State()
        self.procs: dict[str, Any] = {}
        self.restarts = RestartPolicy(cfg.restart_enabled, cfg.supervision.max_restarts_per_min)
        self.carried: dict[str, int] = {}  # frames written per stream by earlier generations
        self.next_seq: dict[str, int] = {}  # per stream: first frame number of the next generation
        self.t_first: Optional[float] = None  # first frames started: --duration counts from here

    # -- lifecycle -----------------------------------------------------------------
    def run(self) -> RunResult:
        remove_stale_segments()
        preflight(self.cfg)
        try:
            os.makedirs(self.cfg.output.dir, exist_ok=True)
        except OSError as exc:
            raise ResourceError(f"output.dir {self.cfg.output.dir}: cannot create ({exc.strerror or exc})") from exc
        logs = self.ctx.Queue()  # one log queue for every generation of processes
        listener = self._start_log_listener(logs)
        self.ctrl = self._new_control(logs)
        previous = self._install_signals()
        run_start = time.monotonic()
        services = None
        try:
            # /metrics and the web view, if configured: they outlive restart generations
            services = Services(self.cfg, lambda: self.state.stats)
            while True:
                self._generation(logs)
                err = self.state.error
                if err is None or self.state.interrupted or not self.restarts.allow(err, self.state.error_stage):
                    if err is not None:
                        self.state.error = self.restarts.exhausted(err)
                    break
                log.warning("restarting the pipeline after: %s (restart %d)", err, self.restarts.total)
                self._carry_over()
        finally:
            if services is not None:
                services.stop()
            self._restore_signals(previous)
            listener.stop()
        mqtt = services.mqtt.stats() if services is not None and services.mqtt is not None else None
        if self.state.error is None:
            self._check_gave_up()
        # the report covers the whole run, restarts included
        report = build_report(self.cfg, self.state.stats, time.monotonic() - run_start, self.state.error,
                              self.state.error_stage, interrupted=bool(self.state.interrupted))
        self._add_restarts(report)
        if mqtt is not None:
            events = (stage_stats(self.state.stats, "sink[").get("alerts") or {}).get("mqtt")
            report["mqtt"] = {"state": mqtt, **({"events": events} if events else {})}
        err = self.state.error
        return RunResult(report, err.exit_code if err else 0, err)

    def _check_gave_up(self) -> None:
        """A live stream that gave up fails the run (exit 1) once the others have ended."""
        gone = [s for s in self.cfg.streams if self.state.stats.get(f"decode[{s.name}]", {}).get("gave_up")]
        if not gone:
            return
        stats = self.state.stats[f"decode[{gone[0].name}]"]
        why = f" ({redact(stats['last_error'])})" if stats.get("last_error") else ""
        names = ", ".join(s.name for s in gone)
        others = "; the other streams ran to the end" if len(gone) < len(self.cfg.streams) else ""
        self.state.error = SourceGaveUp(f"stream{'s' if len(gone) > 1 else ''} {names} gave up after "
                                        f"live.max_reconnects failed reconnects{why}{others}")
        self.state.error_stage = f"decode[{gone[0].name}]"

    def _new_control(self, logs: Any) -> Control:
        return Control(self.ctx.Event(), self.ctx.Event(), self.ctx.Queue(), logs, self.ctx.Event())

    def _generation(self, logs: Any) -> Optional[float]:
        """Build, start, watch and tear down one set of pools and processes."""
        resume = self.restarts.total > 0
        if resume:
            self.ctrl = self._new_control(logs)
        ctrl = self.ctrl
        owner = PoolOwner(self.ctx, self.run_id)
        graph: Graph | None = None
        t_start = None
        try:
            sink = "sink.null" if self.opts.sink == "null" else f"sink.{self.cfg.output.format}"
            graph = build_graph(self.cfg, owner, self.ctx, self.opts.max_frames, sink,
                                self.next_seq if resume else None)
            # every process starts at once: decoders import, open their sources and connect while
            # the model loads; they begin when the classifier and sink are ready
            self._start(graph.by_role("sink", "batch", "source"), ctrl)
            self._await_ready(graph, ctrl)
            if self.state.error is None and not self.state.interrupted:
                ctrl.go.set()
                t_start = time.monotonic()
                self.t_first = self.t_first or t_start
                self._monitor(graph, ctrl)
        finally:
            self._teardown(ctrl, graph)
            owner.unlink_all()
        return t_start

    def _carry_over(self) -> None:
        """Forget the dead generation's processes, keeping what its sink wrote for the report
        and where each stream's numbering goes on."""
        sink = next((d for t, d in self.state.stats.items() if t.startswith("sink[")), {})
        tallies = sink.get("streams") or {}
        for name, tally in tallies.items():
            self.carried[name] = self.carried.get(name, 0) + tally.get("frames", 0)
        if self.opts.sink != "null":
            for s in self.cfg.streams:
                # a SIGKILLed sink's last stats may be up to 0.5 s old (or missing): add the lines
                # it wrote after them
                last = (tallies.get(s.name) or {}).get("last_seq")
                if last is None:
                    last = self.next_seq.get(s.name, 0) - 1  # nothing counted from this generation yet
                self.carried[s.name] = self.carried.get(s.name, 0) + logged_after(self.cfg.output, s.name, last)
        for s in self.cfg.streams:
            # the label log itself is the truth (the sink's last stats may be up to 0.5 s old)
            last = last_logged_frame(self.cfg.output, s.name)
            if last is None:
                last = ((sink.get("streams") or {}).get(s.name) or {}).get("last_seq")
            if last is not None:
                self.next_seq[s.name] = max(self.next_seq.get(s.name, 0), last + 1)
        self.state = _State(interrupted=self.state.interrupted)
        self.procs = {}

    def _add_restarts(self, report: dict[str, Any]) -> None:
        report["restarts"] = dict(self.restarts.counts)
        for name, n in self.carried.items():
            if name in report["streams"]:
                report["streams"][name]["frames"] += n  # label logs are appended across restarts

    def _start(self, specs: list[StageSpec], ctrl: Control) -> None:
        for spec in specs:
            p = self.ctx.Process(target=child_main, args=(spec, ctrl), name=spec.title, daemon=True)
            p.start()
            self.procs[spec.title] = p

    def _await_ready(self, graph: Graph, ctrl: Control) -> None:
        want = {s.title for s in graph.by_role("sink", "batch")}
        start = time.monotonic()
        while not want <= self.state.ready:
            self._pump(ctrl, 0.2)
            self._check_exits()
            if self.state.error or ctrl.stop.is_set():
                return
            waiting = sorted(want - self.state.ready)
            if not waiting:
                return
            # a stage that announced a long one-time step (int8 quantisation) gets its own limit
            deadline = max([start + READY_TIMEOUT_S] + [self.state.slow[t][0] for t in waiting if t in self.state.slow])
            if time.monotonic() > deadline:
                steps = [self.state.slow[t][1] for t in waiting if t in self.state.slow]
                self._fail(StageError(f"{', '.join(waiting)} not ready after {time.monotonic() - start:.0f} s"
                                      + (f" ({'; '.join(steps)})" if steps else "")), "")
                return

    def _monitor(self, graph: Graph, ctrl: Control) -> None:
        progress = Progress(self.cfg, enabled=self.opts.progress, max_frames=self.opts.max_frames)
        duration = self.opts.duration or self.cfg.duration
        t0 = self.t_first or time.monotonic()  # restarts do not extend the run
        failed_at: float | None = None
        try:
            while any(p.is_alive() for p in self.procs.values()) or not self._events_drained(ctrl):
                self._pump(ctrl, 0.2)
                self._check_exits()
                progress.update(self.state.stats)
                if duration and time.monotonic() - t0 >= duration and not ctrl.drain.is_set():
                    log.info("duration of %.0f s reached: stopping", duration)
                    ctrl.drain.set()
                if self.state.error and failed_at is None:
                    failed_at = time.monotonic()
                    ctrl.drain.set()
                if failed_at and time.monotonic() - failed_at > DRAIN_GRACE_S:
                    ctrl.stop.set()
                    break
                if self.state.interrupted >= 2:
                    ctrl.stop.set()
                    break
        finally:
            progress.close()

    def _events_drained(self, ctrl: Control) -> bool:
        return ctrl.events.empty()

    def _pump(self, ctrl: Control, timeout: float) -> None:
        try:
            ev: Event = ctrl.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle(ev, ctrl)
            try:
                ev = ctrl.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, ev: Event, ctrl: Control) -> None:
        if ev.kind == "ready":
            self.state.ready.add(ev.stage)
        elif ev.kind == "slow_step":
            self.state.slow[ev.stage] = (time.monotonic() + ev.data["seconds"], ev.data["what"])
            log.info("%s: %s (allowed %.0f s before it must be ready)", ev.stage, ev.data["what"], ev.data["seconds"])
        elif ev.kind in ("stats", "done"):
            self.state.stats[ev.stage] = ev.data
            if ev.kind == "done":
                self.state.done.add(ev.stage)
        elif ev.kind == "error":
            self._fail(error_from_event(ev.data["kind"], ev.data["message"]), ev.stage)

    def _fail(self, err: VideoclfError, stage: str) -> None:
        if self.state.error is None:
            self.state.error, self.state.error_stage = err, stage
            log.debug("failure in %s: %s", stage or "supervisor", err)

    def _check_exits(self) -> None:
        for title, p in self.procs.items():
            if p.exitcode not in (None, 0) and title not in self.state.done and self.state.error is None:
                # a stage that died without an error event: killed, or crashed in native code
                time.sleep(0.05)  # its error event, if any, may still be in flight
                if self.state.error is None:
                    code = p.exitcode
                    how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                    self._fail(StageError(f"stage {title} {how}"), title)

    # -- signals -------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        def handler(signum: int, _frame: Any) -> None:
            self.state.interrupted += 1
            self.ctrl.drain.set()  # the current generation's
            if self.state.interrupted == 1:
                log.warning("%s: finishing in-flight frames and writing the report (again to abort)",
                            signal.Signals(signum).name)

        previous = {}
        # SIGHUP: the terminal closed; finish and write the report as for SIGTERM
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    # -- teardown ------------------------------------------------------------------
    def _teardown(self, ctrl: Control, graph: Graph | None) -> None:
        ctrl.drain.set()
        deadline = time.monotonic() + JOIN_S
        for p in self.procs.values():
            p.join(max(deadline - time.monotonic(), 0.05))
        ctrl.stop.set()
        for p in self.procs.values():
            p.join(JOIN_S)
        for p in self.procs.values():
            if p.is_alive():
                log.warning("stage %s did not stop: terminating", p.name)
                p.terminate()
                p.join(JOIN_S)
            if p.is_alive():
                p.kill()
                p.join(JOIN_S)
        self._pump(ctrl, 0.0)  # last stats / errors
        for q in (graph.queues if graph else []) + [ctrl.events]:
            _drain(q)
        for p in self.procs.values():
            p.close()

    def _start_log_listener(self, logs: Any) -> logging.handlers.QueueListener:
        handlers = logging.getLogger().handlers or [logging.StreamHandler()]
        for h in handlers:
            h.addFilter(_Redact())
        listener = logging.handlers.QueueListener(logs, *handlers, respect_handler_level=True)
        listener.start()
        return listener


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


def logged_after(output: Any, stream: str, seq: int) -> int:
    """How many complete lines at the end of the log number a frame after ``seq`` (frame
    numbers only grow along a log, across restarts too)."""
    n, prev = 0, None
    for frame in logged_frames(output, stream):
        if frame <= seq or (prev is not None and frame >= prev):  # reached the counted part, or an earlier run
            break
        n, prev = n + 1, frame
    return n


def _drain(q: Any) -> None:
    try:
        while True:
            q.get_nowait()
    except (queue.Empty, OSError, ValueError):
        pass
    q.close()
    q.join_thread()


def run_pipeline(cfg: Config, opts: RunOptions | None = None) -> RunResult:
    return Supervisor(cfg, opts or RunOptions()).run()
