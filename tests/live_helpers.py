"""A real RTSP camera for tests: `videoclf serve` (GStreamer) on 127.0.0.1, a free port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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

    def __init__(self, clip: Path, port: int | None = None) -> None:
        self.clip, self.port = clip, port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str = "", password: str = "") -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/cam"

    def start(self) -> "Camera":
        # `videoclf serve` execs the server, so this pid is the server itself (SIGSTOP reaches it)
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(self.clip),
                                      "--port", str(self.port)], cwd=str(ROOT),
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
