"""The supervisor: owns every segment and process of a run, from preflight to report.

Every stage process starts at once, so decoders import, open their files and connect to
their cameras while the model loads; no frame is classified before the model is ready (a
file waits for it, so its FPS is not diluted by model load; a live source discards what its
camera sends meanwhile and starts on fresh frames). Teardown is the reverse, with bounded
joins: join → terminate → kill.

Each process is a fault domain: a stream's decoder, the classifier, the sink. When one dies
and restarts are on, only that domain is rebuilt from the run plan; the others run on,
their links reconnecting by themselves (``pipeline/ipc/links.py``).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from videoclf.plan.compose import RunPlan, make_plan
from videoclf.config.schema import Config, redact
from videoclf.config.zones import logged_streams
from videoclf.supervision.domains import Domains
from videoclf.core.errors import ResourceError, VideoclfError, error_from_event
from videoclf.core.records import Event
from videoclf.core.runstats import RunStats
from videoclf.observe.report import Progress, build_report, mqtt_json
from videoclf.plan.resume import resume
from videoclf.config.load import load_config
from videoclf.config.watch import ConfigWatcher
from videoclf.supervision.plane import Plane
from videoclf.supervision.reconfig import Reconfig
from videoclf.supervision.services import Services
from videoclf.ipc.shm import PoolOwner, check_free_space, new_run_id, remove_stale_segments
from videoclf.runtime.specs import Control
from videoclf.ipc.transport import Flag, Inbox, Joined, Lost, address

log = logging.getLogger("videoclf")

# model load on a cold cache can be slow; beyond this something is wrong (a stage that announces
# a longer one-time step gets its own limit; the variable is for very slow machines)
READY_TIMEOUT_S = float(os.environ.get("VIDEOCLF_READY_TIMEOUT_S", "300"))
DRAIN_GRACE_S = 2.0  # after a failure, time given to flush classified frames before stopping


@dataclass(frozen=True)
class RunOptions:
    max_frames: Optional[int] = None
    duration: Optional[float] = None
    sink: str = "auto"  # auto → the config's output.format; "null" for benchmarks
    progress: bool = True
    overwrite: bool = False  # start every label log afresh (the one way to lose what a run wrote)
    tap: Optional[str] = None  # an inbox address: the sink also sends each result there (videoclf.api)
    stop: Optional[threading.Event] = None  # set from any thread: finish as after SIGINT (videoclf.api stop())
    watch: Optional[str] = None  # the config file to follow: its streams' changes are applied as the run goes on
    follow: bool = True  # reload ``watch`` when it is saved (else on SIGHUP only)


@dataclass
class RunResult:
    report: dict[str, Any]
    exit_code: int
    error: Optional[VideoclfError] = None


@dataclass
class _State:
    stats: RunStats = field(default_factory=RunStats)  # latest of each stage, by role
    ready: set[str] = field(default_factory=set)
    slow: dict[str, tuple[float, str]] = field(default_factory=dict)  # stage → (ready deadline, what it does)
    errors: dict[str, VideoclfError] = field(default_factory=dict)  # a stage's own error, until it exits
    error: Optional[VideoclfError] = None  # what fails the run
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


def preflight(cfg: Config, run_id: str = "check", max_frames: Optional[int] = None, sink: str = "auto",
              first_seq: tuple[int, ...] = (), overwrite: bool = False) -> RunPlan:
    """The run plan (each file probed once), and the checks that need no child process and
    change nothing: sources, weights path, output dir, /dev/shm."""
    kind = "sink.null" if sink == "null" else f"sink.{cfg.output.format}"
    plan = make_plan(cfg, run_id, max_frames, kind, first_seq, overwrite)
    w = cfg.model.weights
    if w not in ("imagenet", "none") and not os.path.isfile(w):
        from videoclf.core.errors import InputError

        raise InputError(f"model.weights: weights file {w} not found")
    check_output_dir(cfg.output.dir)
    check_free_space(plan.shm_bytes)
    return plan


class Supervisor:
    def __init__(self, cfg: Config, opts: RunOptions, first_seq: tuple[int, ...] = (),
                 started: Optional[Config] = None) -> None:
        """``started``: the config before complete files were left out (``cfg``: the streams to run)."""
        self.cfg = cfg
        self.started = started or cfg
        self.opts = opts
        self.first_seq = first_seq
        self.ctx = mp.get_context("spawn")
        self.run_id = new_run_id()
        logged = logged_streams(cfg.streams)  # a stream's zones: a row each, sharing its decoder's
        self.state = _State(RunStats([lg.name for lg in logged], {i: lg.stream for i, lg in enumerate(logged)}))
        self.t_first: Optional[float] = None  # first frames started: --duration counts from here
        self.segments_gone = False  # the control segment is unlinked: a late signal must not touch it
        self.services: Optional[Services] = None  # their MQTT client publishes the sink's alert events

    # -- lifecycle -----------------------------------------------------------------
    def run(self) -> RunResult:
        remove_stale_segments()
        plan = preflight(self.cfg, self.run_id, self.opts.max_frames, self.opts.sink, self.first_seq,
                         self.opts.overwrite)
        plan = replace(plan, tap=self.opts.tap)
        try:
            os.makedirs(self.cfg.output.dir, exist_ok=True)
        except OSError as exc:
            raise ResourceError(f"output.dir {self.cfg.output.dir}: cannot create ({exc.strerror or exc})") from exc
        owner = PoolOwner(self.run_id)
        self.inbox = Inbox(address(self.run_id, "supervisor")).open()
        self.handlers = logging.getLogger().handlers or [logging.StreamHandler()]
        for h in self.handlers:
            h.addFilter(_Redact())
        try:
            flags = owner.create("ctl", 4, (1,), "uint8")
        except VideoclfError:  # /dev/shm refused: nothing started yet, but the inbox is open
            self.inbox.close()
            raise
        self.ctrl = Control(stop=Flag(flags, 0), drain=Flag(flags, 1), events=self.inbox.address, go=Flag(flags, 2),
                            lean_decode=Flag(flags, 3))
        self.domains = Domains(plan, owner, self.ctx, self.ctrl, self.state, self.opts.sink == "null")
        self.reconfig = Reconfig(self.domains, self.state, self.started, _file_config(self.opts.watch),
                                 logs=self.opts.sink != "null")
        self.plane = Plane(self.reconfig, self.opts.watch, self.readiness)
        self.watcher = ConfigWatcher(self.opts.watch) if self.opts.watch else None
        if self.watcher is not None and self.opts.follow:
            self.watcher.start()
        previous = self._install_signals()
        run_start = time.monotonic()
        services = None
        try:
            # /metrics, the web view and MQTT, if configured
            services = self.services = Services(self.cfg, lambda: self.state.stats, control=self.plane)
            self.domains.start_all()
            self._await_ready()
            if self.state.error is None and not self.state.interrupted:
                self.ctrl.go.set()
                self.t_first = time.monotonic()
                self._monitor()
        finally:
            self.plane.close()
            if self.watcher is not None:
                self.watcher.stop()
            self.reconfig.close()
            self.domains.teardown(self._pump)
            self.segments_gone = True
            owner.unlink_all()
            self.inbox.close()
            if services is not None:
                services.stop()
            self._restore_signals(previous)
        return self._result(time.monotonic() - run_start, services)

    def _result(self, elapsed: float, services: Optional[Services]) -> RunResult:
        client = services.mqtt if services is not None else None
        mqtt = mqtt_json(client.stats("state"), client.stats("events") if self.cfg.output.alerts else None) \
            if client is not None else None
        if self.state.error is None:
            self.state.error, self.state.error_stage = self.domains.gave_up_error()
        # the report covers the whole run, restarts included
        report = build_report(self.domains.cfg, self.state.stats, elapsed, self.state.error,
                              self.state.error_stage, interrupted=bool(self.state.interrupted))
        self.domains.add_restarts(report)
        if self.domains.plan.threads is not None:  # the core budget the threads were sized to
            report["cores"] = self.domains.plan.threads.budget.to_json()
        if mqtt is not None:
            report["mqtt"] = mqtt
        if self.reconfig.history:  # streams added, removed or restarted while the run went on
            report["changes"] = list(self.reconfig.history)
        err = self.state.error
        return RunResult(report, err.exit_code if err else 0, err)

    def _await_ready(self) -> None:
        want = {self.domains.plan.classifier.title, self.domains.plan.sink_title}
        start = time.monotonic()
        while not want <= self.state.ready:
            self._pump(0.2)
            self._poll_stop()
            self.domains.check_exits()
            self._reconfigure()
            if self.state.error or self.state.interrupted:
                return
            waiting = sorted(want - self.state.ready)
            if not waiting:
                return
            # a stage that announced a long one-time step (int8 quantisation) gets its own limit
            deadline = max([start + READY_TIMEOUT_S] + [self.state.slow[t][0] for t in waiting if t in self.state.slow])
            if time.monotonic() > deadline:
                from videoclf.core.errors import StageError

                steps = [self.state.slow[t][1] for t in waiting if t in self.state.slow]
                self.domains.fail(StageError(f"{', '.join(waiting)} not ready after {time.monotonic() - start:.0f} s"
                                             + (f" ({'; '.join(steps)})" if steps else "")), "")
                return

    def _monitor(self) -> None:
        progress = Progress(self.cfg, enabled=self.opts.progress, max_frames=self.opts.max_frames)
        duration = self.opts.duration or self.cfg.duration
        t0 = self.t_first or time.monotonic()
        failed_at: float | None = None
        try:
            while self.domains.alive() or not self.inbox.empty():
                self._pump(0.2)
                self._poll_stop()
                self.domains.check_exits()
                self._reconfigure()
                progress.update(self.state.stats)
                if duration and time.monotonic() - t0 >= duration and not self.ctrl.drain.is_set():
                    log.info("duration of %.0f s reached: stopping", duration)
                    self.ctrl.drain.set()
                if self.state.error and failed_at is None:
                    failed_at = time.monotonic()
                    self.ctrl.drain.set()
                if failed_at and time.monotonic() - failed_at > DRAIN_GRACE_S:
                    self.ctrl.stop.set()
                    break
                if self.state.interrupted >= 2:
                    self.ctrl.stop.set()
                    break
        finally:
            progress.close()

    def _reconfigure(self) -> None:
        """Changes to the streams: the config file (edited, or SIGHUP) and the HTTP API."""
        if self.ctrl.drain.is_set() or self.ctrl.stop.is_set():
            return
        if self.watcher is not None and self.watcher.take():
            self.reconfig.reload(self.watcher.path, self.opts.watch or "")
        self.plane.serve()
        self.reconfig.tick()

    def readiness(self) -> tuple[bool, str]:
        """Ready: the model is loaded and every stream is connected or retrying within its
        limits (``/readyz``); otherwise why not. Called from the servers' threads."""
        st = self.state
        if st.error is not None or self.ctrl.drain.is_set():
            return False, "the run is stopping"
        if self.domains.plan.classifier.title not in st.ready:
            return False, "model loading"
        if self.domains.plan.sink_title not in st.ready:
            return False, "sink starting"
        for i, s in self.reconfig.stream_indices():
            if i in self.domains.gave_up or st.stats.decoder(i).gave_up:
                return False, f"stream {s.name} gave up"
        return True, ""

    def _pump(self, timeout: float) -> None:
        got = self.inbox.get(timeout)
        while got is not None:
            msg = got[1]
            if isinstance(msg, logging.LogRecord):
                for h in self.handlers:
                    if msg.levelno >= h.level:
                        h.handle(msg)
            elif isinstance(msg, Event):
                self._handle(msg)
            elif not isinstance(msg, (Joined, Lost)):
                log.debug("unexpected status message %r", msg)
            got = self.inbox.get(0)

    def _handle(self, ev: Event) -> None:
        if ev.kind == "ready":
            self.state.ready.add(ev.stage)
        elif ev.kind == "slow_step":
            self.state.slow[ev.stage] = (time.monotonic() + ev.data["seconds"], ev.data["what"])
            log.info("%s: %s (allowed %.0f s before it must be ready)", ev.stage, ev.data["what"], ev.data["seconds"])
        elif ev.kind in ("stats", "done"):
            d = self.domains.items.get(ev.stage)
            if d is not None:
                self.state.stats.put(d.spec.role, getattr(d.spec, "stream", -1), ev.stage,
                                     self.domains.with_carried(ev.stage, ev.data))
        elif ev.kind == "alert" and self.services is not None:
            self.services.publish_event(ev.data["stream"], ev.data["line"])
        elif ev.kind == "error":
            # decided when the process exits: a restart of its domain, or the run's failure
            self.state.errors[ev.stage] = error_from_event(ev.data["kind"], ev.data["message"])

    # -- signals and stop() --------------------------------------------------------
    def interrupt(self, why: str = "stop requested") -> None:
        """What SIGINT does: sources stop reading, in-flight frames are finished, the report is
        written; a second call stops at once."""
        self.state.interrupted += 1
        if self.segments_gone or not hasattr(self, "ctrl"):  # not started yet, or torn down already
            return
        self.ctrl.drain.set()
        if self.state.interrupted == 1:
            log.warning("%s: finishing in-flight frames and writing the report (again to abort)", why)

    def _poll_stop(self) -> None:
        stop = self.opts.stop
        if stop is not None and stop.is_set() and not self.state.interrupted:
            self.interrupt()

    def _install_signals(self) -> dict[int, Any]:
        # only the main thread may install handlers: a run started from another thread (a
        # notebook's worker, videoclf.api's runner) is stopped through RunOptions.stop instead
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, _frame: Any) -> None:
            if signum == signal.SIGHUP and self.watcher is not None:
                self.watcher.trigger()  # reload the config file
                return
            self.interrupt(signal.Signals(signum).name)

        previous = {}
        # SIGHUP: reload the followed config file; without one (the terminal closed), finish and
        # write the report as for SIGTERM
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _file_config(path: Optional[str]) -> Optional[Config]:
    """The followed config file as it is at start (None: not followed, or not readable now)."""
    if not path:
        return None
    try:
        return load_config(path)
    except VideoclfError:
        return None


def run_pipeline(cfg: Config, opts: RunOptions | None = None) -> RunResult:
    """Run ``cfg``'s streams; each goes on after what its label log already holds
    (``pipeline/plan/resume.py``), and a file whose log is complete is not classified again."""
    opts = opts or RunOptions()
    check_output_dir(cfg.output.dir)
    plan = resume(cfg, opts.overwrite, logs=opts.sink != "null")
    if plan.nothing_to_do:
        log.info("every stream's label log is complete: nothing to classify")
        report = build_report(cfg.model_copy(update={"streams": []}), RunStats([]), 0.0, None, "")
        report["skipped"] = dict(plan.skipped)
        return RunResult(report, 0)
    result = Supervisor(plan.cfg, opts, plan.first_seq, started=cfg).run()
    if plan.skipped:
        result.report["skipped"] = dict(plan.skipped)
    return result
