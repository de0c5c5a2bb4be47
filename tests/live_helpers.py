"""A real RTSP camera for tests: `videoclf serve` (GStreamer) on 127.0.0.1, a free port."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gst_rtsp_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return os.access("/usr/bin/python3", os.X_OK) and subprocess.run(
        ["/usr/bin/python3", "-c", probe], capture_output=True, timeout=30).returncode == 0


needs_gst = pytest.mark.skipif(not gst_rtsp_available(), reason="GStreamer RTSP server missing (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
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
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(self.clip),
                                      "--port", str(self.port), *self.auth], cwd=str(ROOT),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not _listening(self.port):
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


class SilentHost:
    """A 'camera' on 127.0.0.1 that accepts TCP connections and never says a word (a hung
    device, or a port forwarded to nothing): the client's RTSP open can only time out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)  # bounded accept, so stop() ends the thread promptly
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-host", daemon=True)

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            self._conns.append(conn)  # held open, never read or written

    def __enter__(self) -> "SilentHost":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self._conns:
            c.close()
        self.sock.close()


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
