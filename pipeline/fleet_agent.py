"""The per-node agent of a fleet: a Ray actor that runs ordinary videoclf supervisors as
subprocesses, one per shard (a set of streams placed on its node), and hands their label
lines to the driver in small batches.

The supervisor runs as a subprocess, not inside the actor: Ray runs actor methods on threads
where signal handlers cannot be installed, and a supervisor of its own keeps its fault
domains, restarts and shared-memory hygiene. It gets SIGTERM when the agent dies (a node
lost or stopped): it drains and unlinks its segments.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


def _die_with_parent() -> None:
    """In the shard's supervisor, before exec: SIGTERM when the agent's process dies."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class _Shard:
    proc: subprocess.Popen
    dir: Path
    streams: tuple[str, ...]
    fmt: str
    offsets: dict[str, int] = field(default_factory=dict)
    stopping: bool = False  # the agent sent SIGTERM: dying of it is a stop, not a failure


class Agent:
    def __init__(self, workdir: str, run: str) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.root = Path(workdir) / run / self.node[:12]
        self.shards: dict[str, _Shard] = {}

    def node_id(self) -> str:
        return self.node

    def start(self, shard: str, config: dict[str, Any], duration: Optional[float]) -> int:
        """Run ``config`` (its streams, the run's model and outputs) in a supervisor of its own."""
        d = self.root / shard
        d.mkdir(parents=True, exist_ok=True)
        config = {**config, "output": {**config.get("output", {}), "dir": str(d / "out")}}
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        cmd = [sys.executable, "-m", "pipeline.cli", "run", str(d / "config.yaml"), "-q"]
        if duration:
            cmd += ["--duration", f"{duration:.1f}"]
        with open(d / "stderr.log", "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_die_with_parent,
                                    cwd=os.getcwd())
        names = tuple(s["name"] for s in config["streams"])
        self.shards[shard] = _Shard(proc, d, names, config.get("output", {}).get("format", "jsonl"))
        return proc.pid

    def poll(self) -> dict[str, dict[str, Any]]:
        """Per shard: the complete label lines written since the last poll, per stream; and,
        once its supervisor has exited, the exit code, report and last error line."""
        return {sid: self._poll(s) for sid, s in self.shards.items()}

    def _poll(self, s: _Shard) -> dict[str, Any]:
        code = s.proc.poll()
        if code == -signal.SIGTERM and s.stopping:
            # the signal can land after the supervisor finished and put back the default
            # handler (its own --duration ran out at the same moment): nothing was lost
            code = 0
        lines = {name: self._new_lines(s, name) for name in s.streams}  # after poll(): nothing is missed at exit
        out: dict[str, Any] = {"lines": lines, "exit": code}
        if code is not None:
            rep = s.dir / "out" / "report.json"
            out["report"] = json.loads(rep.read_text()) if rep.exists() else None
            err = (s.dir / "stderr.log").read_text(errors="replace").strip().splitlines()
            out["error"] = next((ln for ln in reversed(err) if ln.startswith("videoclf: error:")), None)
        return out

    @staticmethod
    def _new_lines(s: _Shard, name: str) -> list[str]:
        path = s.dir / "out" / f"{name}.{s.fmt}"
        start = s.offsets.get(name, 0)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # complete lines only: the last may be half written
        s.offsets[name] = start + end
        return data[:end].decode("utf-8", errors="replace").splitlines()

    def stop(self, shard: str, grace: float = 10.0) -> dict[str, Any]:
        """SIGTERM the shard's supervisor (it drains and writes its report), then its last lines."""
        s = self.shards[shard]
        if s.proc.poll() is None:
            s.stopping = True
            s.proc.send_signal(signal.SIGTERM)
            try:
                s.proc.wait(grace)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(5)
        return self._poll(s)

    def stop_all(self, grace: float = 10.0) -> dict[str, dict[str, Any]]:
        for s in self.shards.values():
            if s.proc.poll() is None:
                s.stopping = True
                s.proc.send_signal(signal.SIGTERM)
        return {sid: self.stop(sid, grace) for sid in self.shards}
