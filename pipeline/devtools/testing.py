"""Scripted stages for exercising the stage loops in one process (tests, experiments).

``FakeSource([frame, frame, Pause(0.5), CRASH, EOF])`` yields frames, heartbeats through a
pause, raises at ``CRASH`` and ends at ``EOF``; ``EchoClassifier`` labels each frame with its
mean pixel value after an optional delay; ``ListSink`` keeps what reaches it. ``run_in_threads``
wires them with real shared-memory pools and socket links and runs each loop in a thread.

Real RTSP cameras for tests and benchmarks: ``Camera(clip).start()`` runs ``videoclf serve``
(GStreamer) on 127.0.0.1 at a free port, ``serving(clip)`` is a factory of them killed at exit,
and ``gst_rtsp_available()`` says whether this machine can serve at all. Nothing here needs pytest.
"""
from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np

from videoclf.runtime.loops import run_batch, run_sink, run_source
from videoclf.core.records import Decoded, EndOfStream, FrameRecord, Hello, Result
from videoclf.core.contract import Policy, StageBase
from videoclf.runtime.child import Reporter
from videoclf.runtime.specs import BatchSpec, Control, Port, SinkSpec, SourceSpec
from videoclf.ipc.transport import Outbox, address


class Pause(NamedTuple):
    seconds: float


CRASH = "crash"
EOF = "eof"


class ScriptedCrash(RuntimeError):
    pass


class FakeSource(StageBase):
    """Yields the script's frames at ``fps`` (as fast as taken when None)."""

    def __init__(self, script: Sequence[Any], fps: Optional[float] = None) -> None:
        self.script, self.fps = list(script), fps

    def frames(self) -> Iterator[Optional[Decoded]]:
        pts = 0.0
        for item in self.script:
            if isinstance(item, Pause):
                end = time.monotonic() + item.seconds
                while time.monotonic() < end:
                    time.sleep(0.01)
                    yield None  # heartbeat: the loop checks its stop flags meanwhile
            elif isinstance(item, str) and item == CRASH:
                raise ScriptedCrash("scripted crash")
            elif isinstance(item, str) and item == EOF:
                return
            else:
                if self.fps:
                    time.sleep(1 / self.fps)
                yield Decoded(item, pts)
                pts += 1 / (self.fps or 30)


class EchoClassifier(StageBase):
    """A synchronous batch stage: each frame's label is its mean pixel value."""

    full = False

    def __init__(self, max_batch: int = 4, delay_s: float = 0.0) -> None:
        self.max_batch, self.delay_s = max_batch, delay_s
        self.batches: list[int] = []
        self._done: list[tuple[Sequence[FrameRecord], list[Result]]] = []

    @property
    def pending(self) -> int:
        return len(self._done)

    def submit(self, inputs: Sequence[np.ndarray], records: Sequence[FrameRecord]) -> None:
        time.sleep(self.delay_s)
        self.batches.append(len(records))
        self._done.append((records, [Result(r, ((f"mean{int(x.mean())}", 1.0),), self.delay_s * 1000, len(records))
                                     for r, x in zip(records, inputs)]))

    def collect(self, block: bool) -> list[tuple[Sequence[FrameRecord], list[Result]]]:
        out, self._done = self._done, []
        return out


class ListSink(StageBase):
    def __init__(self) -> None:
        self.results: list[tuple[float, Result]] = []  # (monotonic time written, result)
        self.ends: list[EndOfStream] = []

    def write(self, result: Result, frame: Any = None) -> None:
        self.results.append((time.monotonic(), result))

    def end(self, eos: EndOfStream) -> None:
        self.ends.append(eos)


@dataclass
class Threads:
    sources: list[FakeSource]
    classifier: EchoClassifier
    sink: ListSink
    reporters: dict[str, Reporter] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)


@dataclass(frozen=True)
class Wiring:
    """How ``run_in_threads`` connects the scripted stages."""

    slots: int = 4  # per stream pool
    shape: tuple[int, int, int] = (8, 8, 3)
    policies: Optional[tuple[str, ...]] = None  # per stream; default lossless
    max_wait_s: float = 0.01
    timeout: float = 30.0


def run_in_threads(owner: Any, sources: list[FakeSource], classifier: EchoClassifier, sink: ListSink,
                   wiring: Wiring = Wiring()) -> Threads:
    """Run ``sources`` → ``classifier`` → ``sink`` through real slot pools and real socket
    links, one thread per loop, until the sink has every stream's end (or ``wiring.timeout``)."""
    w = wiring
    policies = list(w.policies or ["lossless"] * len(sources))
    ctrl = Control(stop=threading.Event(), drain=threading.Event(), events=queue.Queue(), go=threading.Event())
    n = len(sources)
    inbox, to_sink = address(owner.run_id, "classify"), address(owner.run_id, "sink")
    pools = {i: owner.create(f"t{i}", w.slots, w.shape, "uint8") for i in range(n)}
    run = Threads(sources, classifier, sink)
    specs = [SourceSpec(title=f"decode[s{i}]", kind="fake", config=None, stream=i, out=Port(pools[i], inbox),
                        policy=Policy(policies[i])) for i in range(n)]
    batch = BatchSpec(title="classify[fake]", kind="fake", config=None, inbox=inbox, to=to_sink, n_streams=n,
                      max_batch=classifier.max_batch, max_wait_s=w.max_wait_s,
                      drop_oldest={i: 0.0 for i, p in enumerate(policies) if p == "drop_oldest"})  # keep a batch, no more
    sink_spec = SinkSpec(title="sink[fake]", kind="fake", config=None, inbox=to_sink, n_streams=n)

    def go(loop: Any, stage: Any, spec: Any) -> None:
        rep = Reporter(spec, ctrl, stage)
        run.reporters[spec.title] = rep
        try:
            loop(stage, spec, ctrl, rep)
        except BaseException as exc:  # noqa: BLE001 (kept for the caller to assert on)
            run.errors[spec.title] = exc
            if loop is run_source:  # what the supervisor does for a stream it gives up: end it
                Outbox(inbox, Hello("supervisor", spec.stream)).send(EndOfStream(spec.stream, -1, "crashed"))

    threads = [threading.Thread(target=go, args=(run_sink, sink, sink_spec), daemon=True),
               threading.Thread(target=go, args=(run_batch, classifier, batch), daemon=True)]
    threads += [threading.Thread(target=go, args=(run_source, s, spec), daemon=True) for s, spec in zip(sources, specs)]
    ctrl.go.set()
    for t in threads:
        t.start()
    threads[0].join(w.timeout)
    ctrl.stop.set()
    for t in threads[1:]:
        t.join(5)
    return run


# -- real RTSP cameras: `videoclf serve` (GStreamer) on 127.0.0.1, a free port -------------------

ROOT = Path(__file__).resolve().parents[2]


def gst_rtsp_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return os.access("/usr/bin/python3", os.X_OK) and subprocess.run(
        ["/usr/bin/python3", "-c", probe], capture_output=True, timeout=30).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something on 127.0.0.1 accepts connections on ``port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Camera:
    """One simulated camera; `kill()` + `start()` restarts it on the same port."""

    def __init__(self, clip: Path, port: int | None = None, user: str = "", password: str = "") -> None:
        self.clip, self.port = clip, port or free_port()
        self.auth = ["--user", user, "--password", password] if user else []  # Basic auth, like an IP camera
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str = "", password: str = "") -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/cam"

    def start(self) -> "Camera":
        # `videoclf serve` execs the server, so this pid is the server itself (SIGSTOP reaches it)
        self.proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "serve", str(self.clip),
                                      "--port", str(self.port), *self.auth], cwd=str(ROOT),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"rtsp server exited: {self.proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise RuntimeError("rtsp server did not listen within 20 s")
            time.sleep(0.05)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server must be able to die
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None


@contextlib.contextmanager
def serving(clip: Path) -> Iterator[Callable[..., Camera]]:
    """A factory of cameras serving ``clip``: start(port=None, user=, password=); all killed at exit."""
    started: list[Camera] = []

    def start(port: int | None = None, **auth: str) -> Camera:
        cam = Camera(clip, port, **auth).start()
        started.append(cam)
        return cam

    try:
        yield start
    finally:
        for cam in started:
            cam.kill()


def stage_processes(pid: int) -> dict[str, Any]:
    """The stage processes below ``pid`` by title, e.g. {"decode[a]": psutil.Process}."""
    import psutil

    out = {}
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for k in kids:
        try:
            cmd = " ".join(k.cmdline())
        except psutil.Error:
            continue
        if cmd.startswith("videoclf: "):
            out[cmd.removeprefix("videoclf: ").strip()] = k
    return out
