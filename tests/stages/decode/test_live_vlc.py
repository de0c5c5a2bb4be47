"""VLC as the camera: its RTSP server refuses RTP over TCP (461 Unsupported transport).
`live.transport: auto` falls back to UDP once and streams; an explicit tcp says what to try."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_video, run_cli
from helpers_proc import wait_for
from videoclf.devtools.testing import free_port, listening

pytestmark = pytest.mark.skipif(shutil.which("cvlc") is None or shutil.which("setpriv") is None,
                                reason="needs VLC (apt vlc-bin vlc-plugin-base; .ci/run installs it) and setpriv")


@pytest.fixture(scope="module")
def vlc_camera():
    """cvlc serving a 20 s clip in a loop as rtsp://127.0.0.1:PORT/cam, as an unprivileged user
    (VLC refuses to run as root)."""
    folder = tempfile.mkdtemp(prefix="videoclf-vlc-")
    os.chmod(folder, 0o755)
    clip = make_video(Path(folder) / "cam.mp4", 320, 240, frames=600, fps=30, gop=30)
    os.chmod(clip, 0o644)
    port = free_port()
    user = [] if os.geteuid() != 0 else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    proc = subprocess.Popen([*user, "env", f"HOME={folder}", "cvlc", "-q", str(clip), "--loop",
                             "--sout", f"#rtp{{sdp=rtsp://127.0.0.1:{port}/cam}}", "--sout-keep"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening(port), 20, "VLC's RTSP server to start")
        time.sleep(1)
        yield f"rtsp://127.0.0.1:{port}/cam"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def config(tmp_path: Path, url: str, **live) -> Path:
    p = tmp_path / "vlc.yaml"
    p.write_text(yaml.safe_dump({"streams": [{"name": "vlc", "source": url, "live": live}],
                                 "model": {"backbone": "efficientnet_lite0", "weights": "imagenet"},
                                 "output": {"dir": str(tmp_path / "out")}}))
    return p


def test_auto_transport_falls_back_to_udp_when_the_server_refuses_tcp(vlc_camera, tmp_path):
    res = run_cli("run", str(config(tmp_path, vlc_camera)), "--duration", "6")
    assert res.returncode == 0, res.stderr
    stream = json.loads((tmp_path / "out" / "report.json").read_text())["streams"]["vlc"]
    assert stream["transport"] == "udp" and stream["frames"] > 60, stream
    assert res.stderr.count("refuses RTP over TCP (461 Unsupported transport): using UDP") == 1, res.stderr


def test_an_explicit_transport_the_server_refuses_names_the_other(vlc_camera, tmp_path):
    res = run_cli("run", str(config(tmp_path, vlc_camera, transport="tcp", max_reconnects=1, backoff_s=0.2)),
                  "--duration", "10")
    assert "the server refuses RTSP over tcp (461 Unsupported transport): try live.transport: udp" in res.stderr, res.stderr
    assert res.returncode == 1  # the stream gave up: the run says so
