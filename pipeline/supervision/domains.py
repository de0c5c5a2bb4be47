"""Fault domains: one process each (a stream's decoder, the classifier, the sink), started from
the run plan and, when one dies, rebuilt alone while the others run on.

- A decoder gets fresh pools (a new generation) and goes on after its stream's last logged
  frame; the classifier holds on to the frames the dead one sent until they are classified.
- A new classifier is started with the same spec; the decoders reconnect and send again
  what the dead one held (files) or count it as dropped (cameras).
- A new sink appends to the label logs; the classifier replays what they lack.

Restarts are limited per domain (``supervision.max_restarts_per_min``). A decoder over its
limit gives its stream up (the others go on; the run exits 1 at the end); a classifier or
sink over its limit fails the run.
"""
from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from videoclf.plan.compose import RunPlan
from videoclf.config.zones import logged_streams
from videoclf.config.schema import redact
from videoclf.core.errors import SourceGaveUp, StageError, VideoclfError
from videoclf.stages.outputs.labellog import last_logged_frame, logged_after
from videoclf.core.records import EndOfStream, Hello
from videoclf.core.stats import StageStats
from videoclf.supervision.restart import RestartPolicy
from videoclf.ipc.shm import PoolOwner
from videoclf.runtime.child import child_main
from videoclf.runtime.specs import Control, StageSpec
from videoclf.ipc.transport import Outbox

log = logging.getLogger("videoclf")

JOIN_S = 3.0
# counters that add up over a domain's generations (a new process counts from zero)


@dataclass
class Domain:
    spec: StageSpec
    proc: Any
    gen: int = 0
    over: bool = False  # this generation's process has exited and been dealt with


class Domains:
    def __init__(self, plan: RunPlan, owner: PoolOwner, ctx: Any, ctrl: Control, state: Any, null_sink: bool) -> None:
        self.plan, self.owner, self.ctx, self.ctrl, self.state = plan, owner, ctx, ctrl, state
        self.null_sink = null_sink
        self.restarts = RestartPolicy(self.cfg.restart_enabled, self.cfg.supervision.max_restarts_per_min)
        self.items: dict[str, Domain] = {}
        self.dead: list[Any] = []  # processes of earlier generations
        self.carried: dict[str, StageStats] = {}  # per stage title: the last record of its earlier generations
        self.carried_frames: dict[str, int] = {}  # per stream: lines that earlier sinks logged
        self.gave_up: dict[int, VideoclfError] = {}  # streams given up after too many restarts
        self._ends: list[tuple[Outbox, EndOfStream]] = []  # ends of given-up streams, until delivered

    @property
    def cfg(self) -> Any:
        """The run's config: its streams are every stream the run has had (a removed one keeps
        its index), which grow when one is added (``videoclf.supervision.reconfig``)."""
        return self.plan.cfg

    # -- starting ------------------------------------------------------------------
    def start_all(self) -> None:
        """Every process at once: sink, classifier, then the decoders."""
        self.start(self.plan.sink(), 0)
        self.start(self.plan.classifier, 0)
        for i, s in enumerate(self.cfg.streams):
            self.start(self.plan.source(self.owner, i, 0, self.plan.first(i)), 0)

    def start(self, spec: StageSpec, gen: int) -> None:
        p = self.ctx.Process(target=child_main, args=(spec, self.ctrl), name=spec.title, daemon=True)
        p.start()
        self.items[spec.title] = Domain(spec, p, gen)

    def alive(self) -> bool:
        return any(d.proc.is_alive() for d in self.items.values())

    # -- deaths ---------------------------------------------------------------------
    def check_exits(self) -> None:
        for d in list(self.items.values()):
            code = d.proc.exitcode
            if code is None or d.over:
                continue
            d.over = True
            title = d.spec.title
            if code == 0:
                continue
            err = self.state.errors.pop(title, None)
            if err is None:  # killed, or crashed in native code, without a word
                how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                err = StageError(f"stage {title} {how}")
            self._died(d, err)
        self._deliver_ends()

    def _died(self, d: Domain, err: VideoclfError) -> None:
        title = d.spec.title
        stopping = self.ctrl.drain.is_set() or self.ctrl.stop.is_set()
        if not stopping and self.restarts.allow(err, title):
            log.warning("restarting %s after: %s (restart %d of this domain)", title, err, self.restarts.counts[title])
            self._restart(d)
        elif not stopping and d.spec.role == "source" and self.restarts.enabled and err.exit_code == 1:
            self._give_up(d, err)
        else:
            self.fail(self.restarts.exhausted(err, title), title)

    def fail(self, err: VideoclfError, stage: str) -> None:
        if self.state.error is None:
            self.state.error, self.state.error_stage = err, stage
            log.debug("failure in %s: %s", stage or "supervisor", err)

    def _restart(self, d: Domain) -> None:
        title = d.spec.title
        self._retire(title)
        self.dead.append(d.proc)
        self.state.ready.discard(title)
        if d.spec.role == "source":
            i = d.spec.stream
            self.unlink_pools(d.spec)
            spec: StageSpec = self.plan.source(self.owner, i, d.gen + 1, self.next_seq(i))
        elif d.spec.role == "batch":
            spec = self.plan.classifier
        else:
            spec = self._next_sink()
        self.start(spec, d.gen + 1)

    def unlink_pools(self, spec: Any) -> None:
        self.owner.unlink(spec.out.pool)
        if spec.display is not None:
            self.owner.unlink(spec.display.port.pool)

    def next_seq(self, i: int) -> int:
        """Where stream ``i``'s numbering goes on: after its last logged frame, and for a camera
        after the last frame its dead decoder numbered (frames in flight keep theirs)."""
        lasts = [None if self.null_sink else last_logged_frame(self.cfg.output, name)
                 for name in self.cfg.streams[i].logical_names]  # with zones: the lowest of their logs
        last = None if None in lasts else min(lasts)
        if last is None:
            last = self.state.stats.stream(i).last_seq
        nxt = self.plan.first(i) - 1 if last is None else max(last, self.plan.first(i) - 1)
        if self.cfg.streams[i].is_live:
            nxt = max(nxt, self.state.stats.decoder(i).counts.next_seq - 1)
        return nxt + 1

    def _next_sink(self) -> StageSpec:
        """A sink that appends: what the dead one logged is counted, and the classifier replays
        from each log's end."""
        last, ended = [], set()
        for i, lg in enumerate(logged_streams(self.cfg.streams)):  # per log (a stream's zones: one each)
            tally = self.state.stats.stream(i)
            n, seq = tally.frames, tally.last_seq  # seq: None before the stream's first line
            if not self.null_sink:
                # its last stats may be up to 0.5 s old (or missing): add the lines it wrote after them
                n += logged_after(self.cfg.output, lg.name, seq)
            self.carried_frames[lg.name] = self.carried_frames.get(lg.name, 0) + n
            logged = None if self.null_sink else last_logged_frame(self.cfg.output, lg.name)
            last.append(next((v for v in (logged, seq) if v is not None), -1))
            if tally.end:
                ended.add(lg.stream)
        self.state.stats.forget_sink()
        return self.plan.sink(tuple(last), frozenset(ended))

    def _give_up(self, d: Domain, err: VideoclfError) -> None:
        i = d.spec.stream
        self.gave_up[i] = err
        self.unlink_pools(d.spec)  # its process stays in items: it is joined and closed at teardown
        log.warning("stream %s: giving up after %d restart(s) of %s in a minute (limit "
                    "supervision.max_restarts_per_min=%d): %s; the other streams go on", self.cfg.streams[i].name,
                    len(self.restarts.times.get(d.spec.title, ())), d.spec.title, self.restarts.per_min, err)
        # the supervisor ends the stream in its decoder's place, so the classifier and sink finish it
        box = Outbox(self.plan.classifier.inbox, Hello("supervisor", i, None))
        self._ends.append((box, EndOfStream(i, self.next_seq(i), "error")))

    def _deliver_ends(self) -> None:
        for box, eos in list(self._ends):
            if box.send(eos):
                self._ends.remove((box, eos))

    # -- stats ---------------------------------------------------------------------
    def _retire(self, title: str) -> None:
        """Keep a dead process's cumulative counters: its successor counts from zero."""
        old = self.state.stats.stages().get(title)
        if old is not None:  # it already holds the counts of the generations before it
            self.carried[title] = old

    def with_carried(self, title: str, data: StageStats) -> StageStats:
        """A stage's record with the cumulative counters of its earlier generations added
        (``StageStats.carried``: drops, duplicates, lost results, reconnects, downtime)."""
        kept = self.carried.get(title)
        return data if kept is None else data.carried(kept)

    def add_restarts(self, report: dict[str, Any]) -> None:
        report["restarts"] = dict(self.restarts.counts)
        for name, n in self.carried_frames.items():
            if name in report["streams"]:
                report["streams"][name]["frames"] += n  # label logs are appended across restarts

    def gave_up_error(self) -> tuple[Optional[VideoclfError], str]:
        """A stream that gave up (a camera past live.max_reconnects, or a decoder past its
        restart limit) fails the run (exit 1) once the others have ended."""
        stats = self.state.stats
        gone = [s for i, s in enumerate(self.cfg.streams) if stats.decoder(i).gave_up]
        parts = []
        if gone:
            first = stats.decoder(self.cfg.streams.index(gone[0]))
            why = f" ({redact(first.last_error)})" if first.last_error else ""
            parts.append(f"stream{'s' if len(gone) > 1 else ''} {', '.join(s.name for s in gone)} gave up after "
                         f"live.max_reconnects failed reconnects{why}")
        for i, err in self.gave_up.items():
            name = self.cfg.streams[i].name
            parts.append(f"stream {name} gave up after {self.restarts.counts.get(f'decode[{name}]', 0)} restarts of "
                         f"decode[{name}] ({err}; limit supervision.max_restarts_per_min="
                         f"{self.cfg.supervision.max_restarts_per_min})")
        if not parts:
            return None, ""
        n_gone = len(gone) + len(self.gave_up)
        others = "; the other streams ran to the end" if n_gone < len(self.cfg.streams) else ""
        stage = f"decode[{gone[0].name}]" if gone else f"decode[{self.cfg.streams[next(iter(self.gave_up))].name}]"
        return SourceGaveUp("; ".join(parts) + others), stage

    # -- teardown ------------------------------------------------------------------
    def teardown(self, pump: Callable[[float], None]) -> None:
        """drain → join → stop → join → terminate → kill, every wait bounded."""
        self.ctrl.drain.set()
        procs = [d.proc for d in self.items.values()]
        deadline = time.monotonic() + JOIN_S
        for p in procs:
            p.join(max(deadline - time.monotonic(), 0.05))
        self.ctrl.stop.set()
        for p in procs:
            p.join(JOIN_S)
        for p in procs:
            if p.is_alive():
                log.warning("stage %s did not stop: terminating", p.name)
                p.terminate()
                p.join(JOIN_S)
            if p.is_alive():
                p.kill()
                p.join(JOIN_S)
        pump(0.0)  # last stats / errors
        for box, _ in self._ends:
            box.close()
        for p in {id(p): p for p in procs + self.dead}.values():  # each once
            p.join(0.1)
            p.close()
