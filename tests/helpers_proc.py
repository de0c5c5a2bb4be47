"""Process helpers for the failure tests: start the real CLI, find its stage processes by
their titles (``videoclf: classify[cpu]``), kill one, and prove nothing outlives the run."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import psutil

from videoclf.devtools.testing import stage_processes

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The CLI in a subprocess; ``env``: variables added to its environment only."""
    return subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", *args], cwd=str(ROOT), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def interrupt(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Ctrl-C for a CLI run, and wait for it to end; one that outlives ``timeout`` is killed
    (its return code then says so to the caller's assertions)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def wait_for(cond: Callable[[], T], timeout: float, what: str | Callable[[], str]) -> T:
    """Poll ``cond`` every 50 ms until it returns something truthy, and return that. Past
    ``timeout`` s fail naming ``what``; a callable ``what`` is called then, so the message can
    show the state reached (a log's tail, say)."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)
    return value


def stages_of(pid: int) -> dict[str, psutil.Process]:
    """Stage processes below ``pid`` by title, e.g. {"decode[a]": Process}."""
    return stage_processes(pid)


def line_count(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def kill_stage(pid: int, prefix: str, sig: int = signal.SIGKILL) -> psutil.Process:
    procs = {t: p for t, p in stages_of(pid).items() if t.startswith(prefix)}
    assert procs, f"no stage {prefix}* below {pid}: {sorted(stages_of(pid))}"
    victim = next(iter(procs.values()))
    victim.send_signal(sig)
    return victim


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # it exited between the two questions
        return False


def assert_all_gone(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    """No stage process may outlive the run (orphans are what this guards against)."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    assert not alive, f"orphan stage processes: {[(p.pid, ' '.join(p.cmdline())) for p in alive]}"


def kill_run_after(config: Path, log: Path, lines: int) -> None:
    """Run ``videoclf run CONFIG`` and SIGKILL its main process once ``log`` holds ``lines``
    lines (a power cut mid-run); every stage process must die with it."""
    proc = start_cli("run", str(config), "-q")
    try:
        wait_for(lambda: line_count(log) >= lines, 120, f"{lines} labels")
        kids = list(stages_of(proc.pid).values())
        assert kids, "no stage processes: the run ended before the kill"
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert_all_gone(kids)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to 127.0.0.1:``port``: (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()
