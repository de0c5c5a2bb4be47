"""Live-camera test helpers. The real RTSP camera (`videoclf serve` on 127.0.0.1, a free port)
lives in pipeline/devtools/testing.py, so benchmarks use it too; it is re-exported here for the tests,
beside what only tests need: the ``needs_gst`` mark and a host that never answers."""
from __future__ import annotations

import socket
import threading

import pytest

from videoclf.devtools.testing import Camera, free_port, gst_rtsp_available, listening, serving

__all__ = ["Camera", "SilentHost", "free_port", "gst_rtsp_available", "listening", "needs_gst", "serving"]

needs_gst = pytest.mark.skipif(not gst_rtsp_available(), reason="GStreamer RTSP server missing (.ci/run installs it)")


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
