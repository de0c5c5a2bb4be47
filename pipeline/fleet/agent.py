"""The per-node agent of a fleet: a Ray actor that runs ordinary videoclf supervisors as
subprocesses, one per shard (a set of streams placed on its node), and hands their label
lines and alert events to the driver in small batches.

The supervisor runs as a subprocess, not inside the actor: Ray runs actor methods on threads
where signal handlers cannot be installed, and a supervisor of its own keeps its fault
domains, restarts and shared-memory hygiene. It gets SIGTERM when the agent dies (a node
lost or stopped): it drains and unlinks its segments.

The driver keeps how far it has read each shard file and sends it with every poll: a poll
answer that is lost, or that arrives after a stop's answer, costs nothing and repeats
nothing. Secrets reach the shard only in its environment (``env``): its config keeps the
``${VAR}`` references, and everything under the run's directory is private (0700
directories, 0600 files, the shard's own files by its umask).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml


MAX_READ = 4 << 20  # bytes of one file handed over per poll (the rest comes with the next)
EVENTS = "events.jsonl"


def _die_with_parent() -> None:
    """In the shard's supervisor, before exec: SIGTERM when the agent's process dies, and
    files private to the user (shard outputs may name sources; logs may quote them)."""
    import ctypes

    os.umask(0o077)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _expand(text: str, env: dict[str, str]) -> str:
    from videoclf.config.load import _ENV

    return _ENV.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def private_dir(path: Path, top: Path) -> None:
    """Create ``path`` and the directories from ``top`` down to it, mode 0700 (``top``, say
    /tmp/videoclf-fleet, may be shared by runs: its mode is only set when it is created)."""
    top.mkdir(mode=0o700, parents=True, exist_ok=True)
    rel = path.relative_to(top)
    for d in [*reversed(rel.parents), rel][1:]:  # parents end with '.', which is ``top``
        (top / d).mkdir(mode=0o700, exist_ok=True)
        os.chmod(top / d, 0o700)


def private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # a file left by an earlier run keeps its mode otherwise
        f.write(text)


@dataclass
class _Shard:
    proc: subprocess.Popen
    dir: Path
    files: tuple[str, ...]  # the files handed to the driver: label logs, events
    stopping: bool = False  # the agent sent SIGTERM: dying of it is a stop, not a failure


class Agent:
    def __init__(self, workdir: str, run: str) -> None:
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        self.workdir = Path(workdir)
        self.root = self.workdir / run / self.node[:12]
        self.shards: dict[str, _Shard] = {}

    def node_id(self) -> str:
        return self.node

    def start(self, shard: str, config: dict[str, Any], duration: Optional[float],
              env: Optional[dict[str, str]] = None) -> int:
        """Run ``config`` (its streams, the run's model and outputs; ``${VAR}`` references
        kept) in a supervisor of its own, with ``env`` (the variables' values) added to its
        environment."""
        d = self.root / shard
        private_dir(d, self.workdir)
        config = {**config, "output": {**config.get("output", {}), "dir": str(d / "out")}}
        private_file(d / "config.yaml", yaml.safe_dump(config))
        cmd = [sys.executable, "-m", "videoclf.cli.main", "run", str(d / "config.yaml"), "-q"]
        if duration:
            cmd += ["--duration", f"{duration:.1f}"]
        fd = os.open(d / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_die_with_parent,
                                    cwd=os.getcwd(), env={**os.environ, **(env or {})})
        # the file names as the shard will see them: a name may have been written as a ${VAR}
        # whose value it happens to contain
        fmt = _expand(config["output"].get("format", "jsonl"), env or {})
        files = tuple(f"{_expand(s['name'], env or {})}.{fmt}" for s in config["streams"]) + (EVENTS,)
        self.shards[shard] = _Shard(proc, d, files)
        return proc.pid

    def poll(self, read: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
        """Per shard: what its files hold past ``read`` (the driver's offsets per shard and
        file) in complete lines, as {file: (offset, bytes)}; and, once its supervisor has
        exited and all of that was handed over, the exit code, report and last error line."""
        return {sid: self._poll(s, read.get(sid) or {}) for sid, s in self.shards.items()}

    def _poll(self, s: _Shard, read: dict[str, int], limit: Optional[int] = MAX_READ) -> dict[str, Any]:
        code = s.proc.poll()
        if code == -signal.SIGTERM and s.stopping:
            # the signal can land after the supervisor finished and put back the default
            # handler (its own --duration ran out at the same moment): nothing was lost
            code = 0
        # read after poll(): nothing is missed at exit
        files = {name: self._read(s.dir / "out" / name, read.get(name, 0), limit) for name in s.files}
        more = any(more for _, _, more in files.values())
        out: dict[str, Any] = {"files": {k: (start, data) for k, (start, data, _) in files.items() if data},
                               "exit": None if more else code}  # its exit once its last lines are handed over
        if out["exit"] is not None:
            rep = s.dir / "out" / "report.json"
            out["report"] = json.loads(rep.read_text()) if rep.exists() else None
            err = (s.dir / "stderr.log").read_text(errors="replace").strip().splitlines()
            out["error"] = next((ln for ln in reversed(err) if ln.startswith("videoclf: error:")), None)
        return out

    @staticmethod
    def _read(path: Path, start: int, limit: Optional[int]) -> tuple[int, bytes, bool]:
        """(start, the complete lines from ``start``, up to ``limit`` bytes (None: all), whether
        more is left for the next poll)."""
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(-1 if limit is None else limit + 1)
        except FileNotFoundError:
            return start, b"", False
        more = limit is not None and len(data) > limit
        data = data[:limit] if more else data
        end = data.rfind(b"\n") + 1  # complete lines only: the last may be half written
        return start, data[:end], more

    def stop(self, shard: str, read: Optional[dict[str, int]] = None, grace: float = 10.0) -> dict[str, Any]:
        """SIGTERM the shard's supervisor (it drains and writes its report), then all its
        lines past ``read``."""
        s = self.shards[shard]
        if s.proc.poll() is None:
            if not s.stopping:  # once: a second SIGTERM tells the supervisor to abort its drain
                s.stopping = True
                s.proc.send_signal(signal.SIGTERM)
            try:
                s.proc.wait(grace)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(5)
        return self._poll(s, read or {}, limit=None)

    def stop_all(self, read: dict[str, dict[str, int]], grace: float = 10.0) -> dict[str, dict[str, Any]]:
        for s in self.shards.values():
            if s.proc.poll() is None:
                s.stopping = True
                s.proc.send_signal(signal.SIGTERM)
        return {sid: self.stop(sid, read.get(sid), grace) for sid in self.shards}
