"""A fleet of cameras on Ray: ``videoclf run CONFIG --ray ADDRESS``.

Frames never leave the node that decodes them; only label lines and alert events travel.
The driver places streams on nodes (``pipeline/fleet/placement.py``), starts one shard per node and
placement (an ordinary supervisor, run by that node's agent actor: ``pipeline/fleet/agent.py``),
gathers the shards' label lines into ``output.dir/<stream>.jsonl`` (each frame once: a line
whose frame number the central log has is dropped) and their events into
``output.dir/events.jsonl`` (``pipeline/fleet/central.py``, which also publishes MQTT), and
writes ``report.json``. Which output goes where: ``pipeline/fleet/outputs.py``.

- **Epochs.** Every assignment of a stream to a node has a new epoch; lines are taken only
  from the shard holding the stream's current epoch, so a node that comes back after it was
  declared dead cannot write.
- **Failover.** A node that Ray declares dead (or whose agent died) loses its streams to the
  nodes with room, in a new shard each: a file goes on after its last logged frame, a camera
  reconnects and numbers on. With no room left, a stream waits (counted, logged).
- **Runtime changes.** The driver watches CONFIG: streams added to it are placed in new
  shards (the others are not touched); a removed stream's shard is stopped, or restarted
  without it when it holds others.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from videoclf.config.schema import Config, StreamConfig
from videoclf.config.changes import diff
from videoclf.config.load import load_config
from videoclf.config.watch import ConfigWatcher
from videoclf.core.errors import VideoclfError
from videoclf.fleet.central import Central
from videoclf.fleet.gather import Gathering
from videoclf.fleet.connect import connect
from videoclf.fleet.outputs import check_fleet, metrics_port, shard_config, write_targets
from videoclf.stages.outputs.labellog import last_logged_frame
from videoclf.stages.outputs.retention import Housekeeper
from videoclf.config.outputs import RetentionRule
from videoclf.fleet.placement import Node, assign, nodes_from_ray
from videoclf.supervision.supervisor import RunResult, _Redact, check_output_dir

log = logging.getLogger("videoclf")


@dataclass
class _Stream:
    cfg: StreamConfig
    node: Optional[str] = None
    shard: Optional[str] = None
    epoch: int = 0
    last: int = -1  # last frame number in the central log
    frames: int = 0
    assignments: list[dict[str, Any]] = field(default_factory=list)
    reassignments: int = 0
    ended: Optional[str] = None  # end reason once its shard finished it
    waiting_since: Optional[float] = None
    unassigned_s: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)  # its section of its last shard's report
    top: Optional[tuple[str, float]] = None  # top-1 label and score of its last gathered line


@dataclass
class _Shard:
    node: str
    streams: dict[str, int]  # name → epoch this shard holds it under
    done: bool = False
    metrics: Optional[tuple[str, int]] = None  # its Prometheus endpoint (host, port), if output.metrics is set
    read: dict[str, int] = field(default_factory=dict)  # file → bytes of it taken (sent with each poll)


class Fleet(Gathering):
    def __init__(self, cfg: Config, path: str, address: str, duration: Optional[float]) -> None:
        self.cfg, self.path, self.address = cfg, path, address
        self.env = cfg.env  # the config's ${VAR}s: handed to the shards in memory, never written
        self.duration = duration or cfg.duration
        # the central logs append: each stream goes on after the last frame they hold
        self.streams = {s.name: _Stream(s, last=_last_logged(cfg, s)) for s in cfg.streams}
        self.shards: dict[str, _Shard] = {}
        self.agents: dict[str, Any] = {}
        self.polls: dict[str, Any] = {}  # node id → its agent's poll in flight
        self.nodes: dict[str, Node] = {}
        self.dead: dict[str, dict[str, Any]] = {}  # node id → when and how fast its loss was seen
        self.last_ok: dict[str, float] = {}
        self.epochs = itertools.count(1)
        self.files: dict[str, Any] = {}
        self.errors: list[str] = []
        # the central logs' retention (each shard applies the rules to its node's video and snapshots)
        self.keeper = Housekeeper(cfg.output.dir, [s.name for s in cfg.streams], cfg.output.format,
                                  cfg.output.retention.model_copy(update={"video": RetentionRule(),
                                                                          "snapshots": RetentionRule()}), 0)
        self.stopping = 0
        self.run_id = f"{os.getpid()}-{int(time.time())}"
        self.watcher = ConfigWatcher(path)

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> RunResult:
        import ray

        check_fleet(self.cfg)
        check_output_dir(self.cfg.output.dir)
        os.makedirs(self.cfg.output.dir, exist_ok=True)
        connect(self.address)
        from videoclf.fleet.agent import Agent

        self.Agent = ray.remote(num_cpus=0)(Agent)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self.watcher.start()
        hide = _Redact()  # a source's password never reaches a log line
        for h in logging.getLogger().handlers:
            h.addFilter(hide)
        start = time.monotonic()
        self.central = Central(self.cfg, list(self.streams))
        try:
            self._refresh_nodes()
            self._place([s for s in self.streams.values()], reason="start")
            self._loop(start)
        finally:
            self.watcher.stop()
            self._stop_all()
            for f in self.files.values():
                f.close()
            self.central.close(self.streams)
            for sig, h in previous.items():
                signal.signal(sig, h)
            for handler in logging.getLogger().handlers:
                handler.removeFilter(hide)
            ray.shutdown()
        return self._result(time.monotonic() - start)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:  # reload CONFIG
            self.watcher.trigger()
            return
        self.stopping += 1
        log.warning("%s: stopping the fleet and writing the report", signal.Signals(signum).name)

    def _loop(self, start: float) -> None:
        poll = self.cfg.cluster.poll_s
        while not self.stopping:
            self._collect()
            self._refresh_nodes()
            self._place([s for s in self.streams.values() if s.node is None and not s.ended], reason="waiting")
            self._watch_config()
            self.central.tick(self.streams)
            self.keeper.tick()  # retention of the central label and event logs
            if all(s.ended for s in self.streams.values()):
                return
            if self.duration and time.monotonic() - start >= self.duration:
                log.info("duration of %.0f s reached: stopping", self.duration)
                return
            time.sleep(poll)

    # -- nodes ----------------------------------------------------------------------------
    def _refresh_nodes(self) -> None:
        import ray

        nodes = {n.id: n for n in nodes_from_ray(ray.nodes(), self.cfg.cluster.streams_per_node)}
        for nid in [n for n in self.nodes if n not in nodes and n not in self.dead]:
            self._node_lost(nid, "Ray declared the node dead")
        self.nodes = {k: v for k, v in nodes.items() if k not in self.dead}

    def _node_lost(self, nid: str, why: str) -> None:
        now = time.monotonic()
        seen = now - self.last_ok.get(nid, now)
        self.dead[nid] = {"lost_at": time.time(), "why": why, "detected_after_s": round(seen, 2)}
        self.agents.pop(nid, None)
        self.polls.pop(nid, None)
        self.nodes.pop(nid, None)
        moved = [s for s in self.streams.values() if s.node == nid and not s.ended]
        for shard in self.shards.values():
            if shard.node == nid:
                shard.done = True
        log.warning("node %s lost (%s, %.1f s after its last answer): moving %s", nid[:12], why, seen,
                    ", ".join(s.cfg.name for s in moved) or "nothing")
        for s in moved:
            s.node = s.shard = None
            s.reassignments += 1
        self._place(moved, reason=f"node {nid[:12]} lost")
        if self.cfg.output.metrics:
            self._write_targets()

    def _agent(self, nid: str) -> Any:
        if nid not in self.agents:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            self.agents[nid] = self.Agent.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)).remote(
                self.cfg.cluster.workdir, self.run_id)
            self.last_ok[nid] = time.monotonic()
        return self.agents[nid]

    # -- placement ------------------------------------------------------------------------
    def _load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for s in self.streams.values():
            if s.node and not s.ended:
                load[s.node] = load.get(s.node, 0) + 1
        return load

    def _place(self, streams: list[_Stream], reason: str) -> None:
        if not streams:
            return
        where = assign([(s.cfg.name, s.cfg.place) for s in streams], list(self.nodes.values()), self._load())
        by_node: dict[str, list[_Stream]] = {}
        now = time.monotonic()
        for s in streams:
            nid = where[s.cfg.name]
            if nid is None:
                if s.waiting_since is None:
                    s.waiting_since = now
                    log.warning("stream %s: no node has room (%s); waiting", s.cfg.name, reason)
                continue
            if s.waiting_since is not None:
                s.unassigned_s += now - s.waiting_since
                s.waiting_since = None
            by_node.setdefault(nid, []).append(s)
        for nid, group in by_node.items():
            self._start_shard(nid, group)

    def _start_shard(self, nid: str, group: list[_Stream]) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        sid = f"shard{len(self.shards) + 1}"
        streams: list[dict[str, Any]] = []
        for s in group:
            s.epoch, s.node, s.shard = next(self.epochs), nid, sid
            s.assignments.append({"node": nid, "epoch": s.epoch, "from_frame": s.last + 1, "at": round(time.time(), 3)})
            # a file by its absolute path: the shard runs in the agent's directory
            source = s.cfg.source if s.cfg.is_live else os.path.abspath(s.cfg.source)
            streams.append({**s.cfg.model_dump(mode="json", exclude_defaults=True), "name": s.cfg.name,
                            "source": source, "start_frame": s.last + 1})
        metrics = metrics_port(self.cfg, len(self.shards))
        config, env = shard_config(self.cfg, streams, metrics, self.env)
        self.shards[sid] = _Shard(nid, {s.cfg.name: s.epoch for s in group}, metrics=metrics)
        limit = self.cfg.cluster.start_timeout_s
        # no duration of its own: the driver stops every shard when the run ends; the
        # secrets go as an argument, in memory, into the shard's environment
        try:
            ray.get(self._agent(nid).start.remote(sid, config, None, env), timeout=limit)
        except RayError as exc:
            why = f"did not start within {limit:g} s (cluster.start_timeout_s)" if isinstance(exc, GetTimeoutError) \
                else f"could not start: {type(exc).__name__}"
            self._start_failed(sid, why)
            return
        log.info("%s on node %s (%s): %s", sid, nid[:12], self.nodes[nid].address,
                 ", ".join(f"{s.cfg.name} from frame {s.last + 1}" for s in group))
        if metrics:
            self._write_targets()

    def _start_failed(self, sid: str, why: str) -> None:
        """The shard's streams end in error (the run goes on with the others and exits 1); if
        its supervisor starts late, its lines are not taken and ``_stop_all`` stops it."""
        shard = self.shards[sid]
        shard.done = True
        for name in shard.streams:
            s = self.streams[name]
            s.ended, s.node = "error", None
        self.errors.append(f"{sid} ({', '.join(shard.streams)}) on node {shard.node[:12]}: {why}")
        if any(not s.ended for s in self.streams.values()):  # else the run ends now, with this as its error
            log.warning("%s; the other streams go on", self.errors[-1])
        shard.streams = {}  # fenced: no epoch of its is current any more

    def _write_targets(self) -> None:
        write_targets(Path(self.cfg.output.dir) / "prometheus_targets.json", self.shards, self.nodes)

    # -- runtime changes ------------------------------------------------------------------
    def _watch_config(self) -> None:
        """CONFIG edited (or SIGHUP): the same comparison as a local run's
        (``videoclf.config.changes``); a changed stream is removed and placed again."""
        if not self.watcher.take():
            return
        try:
            new = load_config(self.path)
            check_fleet(new)
        except VideoclfError as exc:
            for line in str(exc).splitlines():
                log.warning("config not applied, the fleet goes on unchanged: %s", line)
            return
        self.env.update(new.env)
        ch = diff([s.cfg for s in self.streams.values() if s.ended != "removed"], self.cfg, new)
        if ch.restart_keys:
            log.warning("%s: %s changed: this takes a restart (the fleet goes on with the settings it started "
                        "with)", self.path, ", ".join(ch.restart_keys))
        if not ch.streams:
            return
        log.info("%s changed: %s", self.path, ch.describe())
        for name in list(ch.removed) + [c.name for c in ch.changed]:
            if not self.streams[name].ended:
                self._remove(name)
        added = [_Stream(c, last=_last_logged(self.cfg, c)) for c in ch.added + ch.changed]
        for a in added:
            self.streams[a.cfg.name] = a
        if added:
            self.central.add_streams([a.cfg.name for a in added])
            self._place(added, reason="added")

    def _remove(self, name: str) -> None:
        import ray
        from ray.exceptions import RayError

        s = self.streams[name]
        log.info("stream %s: stopping its shard", name)
        sid, shard = s.shard, self.shards.get(s.shard or "")
        agent = self.agents.get(shard.node) if shard is not None else None
        if sid is not None and agent is not None:
            try:
                self._take(sid, ray.get(agent.stop.remote(sid, dict(shard.read)), timeout=60))  # its last lines
            except RayError as exc:  # its node is going: the stream is removed all the same
                log.warning("%s on node %s did not stop cleanly: %s", sid, shard.node[:12], type(exc).__name__)
        s.ended, s.node = "removed", None
        if shard is None:
            return
        shard.done = True
        # co-located streams go on in a shard without it (they pause for its start)
        rest = [self.streams[n] for n, e in shard.streams.items() if n != name and self.streams[n].epoch == e
                and self.streams[n].ended != "removed"]
        for r in rest:
            r.ended, r.node = None, None
        self._place(rest, reason=f"{name} removed")

    # -- end --------------------------------------------------------------------------------
    def _stop_all(self) -> None:
        import ray
        from ray.exceptions import RayError

        for nid, agent in list(self.agents.items()):
            try:
                for sid, got in ray.get(agent.stop_all.remote(self._read(nid)), timeout=60).items():
                    self._take(sid, got)
            except RayError as exc:
                log.warning("node %s did not stop cleanly: %s", nid[:12], exc)

    def _result(self, elapsed: float) -> RunResult:
        from videoclf.fleet.report import fleet_result

        return fleet_result(self, elapsed)


def _last_logged(cfg: Config, s: StreamConfig) -> int:
    last = last_logged_frame(cfg.output, s.name)
    return s.start_frame - 1 if last is None else max(last, s.start_frame - 1)


def run_fleet(cfg: Config, path: str, address: str, duration: Optional[float] = None) -> RunResult:
    return Fleet(cfg, path, address, duration).run()

