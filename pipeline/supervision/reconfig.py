"""Changes to a running run's streams, without a restart: the config file edited, SIGHUP, or
the HTTP API (which edits the file first). The model and the other streams are untouched.

- **Added**: the plan grows by the stream (``with_stream``); the classifier is told
  (``StreamPlan``: it makes room and sends it on to the sink, which opens the stream's log by
  appending) and acknowledges; then the stream's decoder starts. A file whose log is complete
  is not classified again; a camera numbers on after its log's last frame.
- **Removed**: its decoder is stopped; the supervisor ends the stream in its place, so the
  classifier finishes its frames and the sink closes its log; its index is kept (the same name
  added again takes it back).
- **Changed**: its decoder alone restarts with the new settings, after its log's last frame.
- **Anything else** (model, output, …) is read at start only: the change is named as needing a
  restart, and the running config stays.
- **An invalid file**: one warning line per mistake (``FILE:LINE:COL: key: message``); the
  running config stays.

Everything here runs on the supervisor's thread (its monitor loop calls ``tick``)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

from videoclf.config.changes import Changes, diff
from videoclf.config.load import load_config
from videoclf.config.schema import Config, StreamConfig
from videoclf.core.errors import VideoclfError
from videoclf.core.records import Ack, EndOfStream, Hello, StreamPlan
from videoclf.ipc.transport import Outbox
from videoclf.plan.compose import with_stream
from videoclf.config.zones import has_zones
from videoclf.plan.resume import resume
from videoclf.supervision.domains import Domain, Domains

log = logging.getLogger("videoclf")

STOP_S = 3.0  # a stopped decoder that has not exited by then is killed


@dataclass
class _Starting:
    plan: StreamPlan
    first: int
    epoch: int = 0  # the control link's connection the plan went out on (0: not sent yet)


class Reconfig:
    def __init__(self, domains: Domains, state: Any, started: Config, file_cfg: Optional[Config] = None,
                 logs: bool = True) -> None:
        """``started``: the config the run was started from (before complete files were left
        out); ``file_cfg``: the config file as loaded then (command-line overrides aside): its
        keys other than streams are what a change is compared with."""
        self.domains, self.state, self.logs = domains, state, logs
        self.base = file_cfg or started
        self.known: dict[str, StreamConfig] = {s.name: s for s in started.streams}  # what the run holds, by name
        self.index = {s.name: i for i, s in enumerate(domains.cfg.streams)}
        self.starting: dict[int, _Starting] = {}
        # (its link, the end, the link's connection it went out on: 0 not yet)
        self.removing: dict[int, tuple[Outbox, EndOfStream, int]] = {}
        self.removed: set[int] = set()
        self.stopping: list[tuple[Domain, float]] = []
        self.deferred: Optional[tuple[Config, str]] = None
        self.warned: tuple[str, ...] = ()
        self.history: list[dict[str, Any]] = []  # report.json "changes": each change applied, when and from where
        self.box = Outbox(domains.plan.classifier.inbox, Hello("supervisor"))

    # -- what the run holds -------------------------------------------------------------
    def running(self) -> list[StreamConfig]:
        return list(self.known.values())

    def busy(self) -> bool:
        return bool(self.starting or self.removing)

    def stream_indices(self) -> list[tuple[int, StreamConfig]]:
        """The streams the run holds, with their indices (skipped complete files aside)."""
        return [(i, s) for i, s in enumerate(self.domains.cfg.streams) if s.name in self.known
                and i not in self.removed and i not in self.removing]

    # -- a new config ----------------------------------------------------------------------
    def reload(self, path: str, origin: str) -> Optional[Changes]:
        """Read ``path`` again and apply it; an invalid file changes nothing."""
        try:
            new = load_config(path)
        except VideoclfError as exc:
            for line in str(exc).splitlines():
                log.warning("config not applied, the run goes on unchanged: %s", line)
            return None
        return self.apply(new, origin)

    def apply(self, new: Config, origin: str) -> Changes:
        ch = diff(self.running(), self.base, new)
        if ch.restart_keys and ch.restart_keys != self.warned:
            log.warning("%s: %s changed: this takes a restart (the run goes on with the settings it started with)",
                        origin, ", ".join(ch.restart_keys))
        self.warned = ch.restart_keys
        if not ch.streams:
            return ch
        if has_zones(self.domains.cfg.streams) or any(s.zones for s in (*ch.added, *ch.changed)):
            # the logged streams (a zone's index after every stream's) are laid out at the start
            log.warning("%s: streams changed: a run with zones takes a restart for that (the run goes on with the "
                        "streams it started with)", origin)
            return ch
        if self.busy():  # one change at a time: this one follows when the last has settled
            self.deferred = (new, origin)
            return ch
        log.info("%s changed: %s", origin, ch.describe())
        self.history.append({"at": round(time.time(), 3), "origin": origin, "added": [s.name for s in ch.added],
                             "removed": list(ch.removed), "restarted": [s.name for s in ch.changed]})
        for name in ch.removed:
            self._remove(name)
        for s in ch.changed:
            self._change(s, new)
        for s in ch.added:
            self._add(s, new)
        return ch

    # -- the three changes -------------------------------------------------------------
    def _add(self, s: StreamConfig, new: Config) -> None:
        try:
            res = resume(new.model_copy(update={"streams": [s]}), logs=self.logs)
            if res.nothing_to_do:
                self.known[s.name] = s
                log.info("stream %s: not classified again: %s", s.name, res.skipped.get(s.name, ""))
                return
            first = res.first_seq[0]
            i = self.index.get(s.name, len(self.domains.cfg.streams))
            plan = with_stream(self.domains.plan, i, s, first)  # probes a file: a missing one says so here
        except VideoclfError as exc:
            log.warning("stream %s not added: %s", s.name, exc)
            return
        self._plan(i, s, plan, first)

    def _change(self, s: StreamConfig, new: Config) -> None:
        i = self.index.get(s.name)
        d = self._decoder(s.name)
        if i is None or d is None or not d.proc.is_alive():  # ended, or never run: run it again
            self.known.pop(s.name, None)
            self._add(s, new)
            return
        self._stop(d)
        first = self.domains.next_seq(i)
        try:
            plan = with_stream(self.domains.plan, i, s, first)
        except VideoclfError as exc:
            log.warning("stream %s not restarted: %s; it is removed", s.name, exc)
            self.known[s.name] = s
            self._remove(s.name, stopped=True)
            return
        self._plan(i, s, plan, first)

    def _remove(self, name: str, stopped: bool = False) -> None:
        s = self.known.pop(name)
        i = self.index.get(name)
        d = self._decoder(name)
        if i is None or d is None or (not stopped and d.proc.exitcode == 0):  # never ran, or ended
            if i is not None:
                self.removed.add(i)
            return
        if not stopped:
            self._stop(d)
        eos = EndOfStream(i, self.domains.next_seq(i), "removed")
        self.removing[i] = (Outbox(self.domains.plan.classifier.inbox, Hello("supervisor", i, None)), eos, 0)
        log.debug("stream %s (%s): stopping", s.name, i)

    def _plan(self, i: int, s: StreamConfig, plan: Any, first: int) -> None:
        self.domains.plan = plan
        self.index[s.name] = i
        self.known[s.name] = s
        self.removed.discard(i)
        self.state.stats.add_stream(i, s.name)
        drop = s.live.max_queue_s if s.effective_policy == "drop_oldest" else None
        self.starting[i] = _Starting(StreamPlan(i, s.name, drop, first - 1, plan.sink_cfg,
                                                plan.geoms[i] if plan.geoms else None), first)

    def _decoder(self, name: str) -> Optional[Domain]:
        return self.domains.items.get(f"decode[{name}]")

    def _stop(self, d: Domain) -> None:
        d.over = True  # its exit is this change, not a crash to restart from
        d.proc.terminate()
        self.domains.unlink_pools(d.spec)  # the classifier keeps what it holds of them until classified
        self.stopping.append((d, time.monotonic() + STOP_S))

    # -- each turn of the supervisor's loop -------------------------------------------------
    def tick(self) -> None:
        for msg in self.box.replies():
            st = self.starting.pop(msg.stream, None) if isinstance(msg, Ack) else None
            if st is not None:
                self._start(msg.stream, st.first)
        for st in self.starting.values():
            # not sent yet, or sent to a classifier that has died since (its successor is told again)
            if not st.epoch or st.epoch != self.box.epoch or not self.box.connected:
                if self.box.send(st.plan):
                    st.epoch = self.box.epoch
        for i, (box, eos, epoch) in list(self.removing.items()):
            # not sent yet, or sent to a classifier that has died since
            if (not epoch or epoch != box.epoch or not box.connected) and box.send(eos):
                self.removing[i] = (box, eos, box.epoch)
            if any(isinstance(m, Ack) and m.stream == i for m in box.replies()):
                box.close()
                del self.removing[i]
                self.removed.add(i)
                log.info("stream %s removed", self.domains.cfg.streams[i].name)
        now = time.monotonic()
        for d, deadline in list(self.stopping):
            if not d.proc.is_alive():
                self.stopping.remove((d, deadline))
            elif now > deadline:
                d.proc.kill()
        if self.deferred is not None and not self.busy():
            new, origin = self.deferred
            self.deferred = None
            self.apply(new, origin)

    def _start(self, i: int, first: int) -> None:
        s = self.domains.cfg.streams[i]
        old = self._decoder(s.name)
        gen = 0
        if old is not None:
            self.domains.dead.append(old.proc)
            gen = old.gen + 1
        self.domains.start(self.domains.plan.source(self.domains.owner, i, gen, first), gen)
        log.info("stream %s started (frames from %d)", s.name, first)

    def close(self) -> None:
        self.box.close()
        for box, _, _ in self.removing.values():
            box.close()
