"""The fleet driver's gathering: what each node's agent polled in, taken into the central label
logs and events exactly once, from the shard that holds each stream's current epoch."""
from __future__ import annotations

import logging
import time
from typing import Any

from videoclf.fleet.agent import EVENTS
from videoclf.stages.outputs.labellog import frame_of, open_log, top_label

log = logging.getLogger("videoclf")


class Gathering:
    """Mixed into ``Fleet``: it has ``cfg``, ``agents``, ``polls``, ``shards``, ``streams``, ``nodes``,
    ``files``, ``central``, ``errors``, ``last_ok`` and ``_node_lost``/``_write_targets``."""

    def _collect(self) -> None:
        """Take what each node's agent has; one poll in flight per node, never waited on: a
        node that stopped answering holds up no other (Ray says when it is dead)."""
        import ray
        from ray.exceptions import RayActorError, RayError

        for nid, agent in self.agents.items():
            if nid not in self.polls:
                self.polls[nid] = agent.poll.remote(self._read(nid))
        refs = {ref: nid for nid, ref in self.polls.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        for ref in ready:
            nid = refs[ref]
            self.polls.pop(nid, None)
            try:
                polled = ray.get(ref)
            except RayActorError as exc:
                self._node_lost(nid, f"its agent died: {type(exc).__name__}")
                continue
            except RayError as exc:
                log.warning("node %s: poll failed: %s", nid[:12], exc)
                continue
            self.last_ok[nid] = time.monotonic()
            for sid, got in polled.items():
                self._take(sid, got)

    def _read(self, nid: str) -> dict[str, dict[str, int]]:
        """How far each of the node's shards' files was taken: the agent reads on from there."""
        return {sid: dict(sh.read) for sid, sh in self.shards.items() if sh.node == nid}

    @staticmethod
    def _fresh(shard: Any, name: str, start: int, data: bytes) -> list[str]:
        """The lines of ``data`` (file ``name`` from byte ``start``) not taken yet: a poll's
        answer that a stop's answer overtook repeats what was taken. (``start`` is an offset
        the driver sent, and offsets only grow: it is never past what was taken.)"""
        taken, end = shard.read.get(name, 0), start + len(data)
        if end <= taken:
            return []
        shard.read[name] = end
        return data[taken - start:].decode("utf-8", errors="replace").splitlines()

    def _holds(self, shard: Any, name: str) -> bool:
        """Whether ``shard`` holds the stream's current assignment (an older one is fenced)."""
        s = self.streams.get(name)
        return s is not None and shard.streams.get(name) == s.epoch

    def _take(self, sid: str, got: dict[str, Any]) -> None:
        shard = self.shards.get(sid)
        if shard is None:
            return
        logs = {f"{name}.{self.cfg.output.format}": name for name in shard.streams}
        for fname, (start, data) in got["files"].items():
            lines = self._fresh(shard, fname, start, data)
            if fname == EVENTS:
                node = self.nodes.get(shard.node)
                where = {"node": shard.node, "node_address": node.address if node else None, "shard": sid}
                self.central.gather(lines, where, lambda name: self._holds(shard, name))
            elif fname in logs and lines and self._holds(shard, logs[fname]):
                self._write(self.streams[logs[fname]], lines)
        if got["exit"] is not None and not shard.done:
            shard.done = True
            self._shard_ended(sid, shard, got)
            if shard.metrics:
                self._write_targets()

    def _write(self, s: Any, lines: list[str]) -> None:
        fmt = self.cfg.output.format
        f = self.files.get(s.cfg.name)
        if f is None:
            f = self.files[s.cfg.name] = open_log(self.cfg.output, s.cfg.name, self.cfg.model.top_k)
        for line in lines:
            n = frame_of(line.encode(), fmt)
            if n is None or n <= s.last:
                continue  # a CSV header (the central log has its own), or a frame the log has already
            f.write(line)
            s.last, s.frames = n, s.frames + 1
        if self.central.mqtt is not None and lines:
            s.top = top_label(lines[-1], fmt) or s.top

    def _shard_ended(self, sid: str, shard: Any, got: dict[str, Any]) -> None:
        report = got.get("report") or {}
        for name, epoch in shard.streams.items():
            s = self.streams.get(name)
            if s is None or s.epoch != epoch:
                continue
            s.report = (report.get("streams") or {}).get(name) or {}
            s.ended = s.report.get("end") or ("error" if got["exit"] else "stopped")
            s.node = None
        if got["exit"]:
            why = got.get("error") or f"{sid} exited with code {got['exit']}"
            self.errors.append(f"{sid} ({', '.join(shard.streams)}): {why.removeprefix('videoclf: error: ')}")
        self.model = report.get("model") or getattr(self, "model", None)

