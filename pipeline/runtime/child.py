"""The entry point of every stage process: process hygiene, logging to the supervisor, the
stage's stats reports, and the loop of its role."""
from __future__ import annotations

import importlib
import logging
import logging.handlers
import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from typing import Any

from videoclf.core.contract import STAGES, set_announcer
from videoclf.core.errors import StageError, VideoclfError
from videoclf.core.records import Event
from videoclf.core.runstats import ROLE_RECORDS
from videoclf.core.stats import DecoderStats, StageCounters, StageStats
from videoclf.runtime.specs import Control, StageSpec

log = logging.getLogger(__name__)

STATS_EVERY_S = 0.5


class Reporter:
    """The loop's counters and the stage's own stats, one typed record of the stage's role
    (``videoclf.core.stats``), sent to the supervisor every ``STATS_EVERY_S``."""

    def __init__(self, spec: StageSpec, ctrl: Control, stage: Any) -> None:
        self.spec, self.ctrl, self.stage = spec, ctrl, stage
        self.counters = StageCounters()
        self._next = time.monotonic() + STATS_EVERY_S

    def snapshot(self) -> StageStats:
        own = self.stage.stats() or ROLE_RECORDS[self.spec.role]()  # a stage without figures of its own
        rec = replace(own, counts=self.counters.snapshot())
        if isinstance(rec, DecoderStats):
            rec = replace(rec, stream=self.spec.stream)
        return rec

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + STATS_EVERY_S
            self.ctrl.events.put(Event("stats", self.spec.title, self.snapshot()))


class _EventLogHandler(logging.handlers.QueueHandler):
    """Log records go to the supervisor on the child's own status connection."""


def _setup_child_logging(ctrl: Control) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_EventLogHandler(ctrl.events)]
    root.setLevel(logging.DEBUG if os.environ.get("VIDEOCLF_DEBUG") else logging.INFO)


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child if the supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if os.getppid() == 1:  # the parent was already gone before prctl took effect
            os._exit(1)


def _set_title(title: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(f"videoclf: {title}")
    except ImportError:  # optional: titles only help people reading `ps`
        pass


def child_main(spec: StageSpec, ctrl: Control) -> None:
    """Entry point of every stage process. ``ctrl.events`` is the supervisor's inbox address:
    each child talks to it on a connection of its own."""
    from videoclf.ipc.transport import EventOutbox
    from videoclf.runtime.loops import LOOPS

    # the supervisor owns SIGINT/SIGTERM handling and tells children through the events
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the supervisor stops the run
    _die_with_parent()
    # Stages share few cores. Spinning OpenMP workers (the default) then stall each other:
    # measured here, 2 inference threads beside a busy decoder ran 10-15x slower than with
    # passive waits. Must be set before torch/oneDNN load; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _set_title(spec.title)
    ctrl = replace(ctrl, events=EventOutbox(ctrl.events, spec.title))
    _setup_child_logging(ctrl)
    set_announcer(ctrl.events, spec.title)
    stage = None
    code = 0
    try:
        if spec.module:  # the stage's module registers its kind; a child imports only the one it runs
            importlib.import_module(spec.module)
        stage = STAGES.get(spec.kind)(spec.config)
        stage.ctrl = ctrl
        stage.setup()
        rep = Reporter(spec, ctrl, stage)
        if getattr(spec, "lean_decode", False) and stage.one_cpu_stream and ctrl.lean_decode is not None:
            ctrl.lean_decode.set()  # the plan's rule, the engine's fact; before "ready": go comes after it
        ctrl.events.put(Event("ready", spec.title, {}))
        LOOPS[spec.role](stage, spec, ctrl, rep)
        ctrl.events.put(Event("done", spec.title, rep.snapshot()))
    except VideoclfError as exc:
        code = exc.exit_code
        ctrl.events.put(Event("error", spec.title, {"kind": type(exc).__name__, "message": str(exc)}))
    except Exception as exc:  # unexpected: report it with the stage name, keep the traceback in debug
        code = 1
        log.debug("%s failed:\n%s", spec.title, traceback.format_exc())
        ctrl.events.put(Event("error", spec.title, {"kind": StageError.__name__,
                                                     "message": f"{type(exc).__name__}: {exc}"}))
    finally:
        if stage is not None:
            try:
                stage.teardown()
            except Exception as exc:  # a failing teardown must not hide the first error
                log.warning("%s: teardown failed: %s", spec.title, exc)
    sys.exit(code)
