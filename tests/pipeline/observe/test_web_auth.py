"""The web view's token, readiness and the open-address rule, against real runs of the CLI."""
from __future__ import annotations

import secrets
import signal
import socket
import time

from conftest import FAST_MODEL, make_video, run_cli
from helpers_proc import request, start_cli, wait_for
from videoclf.devtools.testing import free_port


def _readiness(port: int, deadline: float) -> list[tuple[int, bytes]]:
    """/readyz from the moment the server answers until it says ready."""
    seen: list[tuple[int, bytes]] = []
    while time.monotonic() < deadline and (not seen or seen[-1][0] != 200):
        try:
            status, _, body = request(port, "GET", "/readyz")
            seen.append((status, body))
        except OSError:  # not listening yet
            pass
        time.sleep(0.02)
    return seen


def test_a_token_guards_every_route_but_the_health_checks(tmp_path, write_config):
    # given a run whose web view has a token from the environment, its listen address from --web
    token, port = secrets.token_hex(16), free_port()
    video = make_video(tmp_path / "v.mp4", width=96, height=64, frames=30)
    cfg = write_config([{"name": "v", "source": str(video), "loop": True}], model=FAST_MODEL,
                       output={"dir": str(tmp_path / "out"),
                               "web": {"listen": "127.0.0.1:1", "token": "${VIDEOCLF_TEST_WEB_TOKEN}"}})
    proc = start_cli("run", str(cfg), "-v", "--duration", "120", "--web", f"127.0.0.1:{port}",
                     env={"VIDEOCLF_TEST_WEB_TOKEN": token})
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        # when /readyz is polled from the start, then it says 503 while the model loads, then 200
        seen = _readiness(port, time.monotonic() + 120)
        assert seen and seen[-1][0] == 200, seen[-3:]
        assert (503, b'{"status":"not ready","reason":"model loading"}') in seen, seen[:3]
        # and without the token the page, the API, uploads and previews answer 401
        status, _, body = request(port, "GET", "/")
        assert status == 401 and b'action="/login"' in body
        for method, path in [("GET", "/api/streams"), ("POST", "/api/classify"), ("GET", "/live/v.jpg"),
                             ("GET", f"/api/streams?token={token}")]:
            assert request(port, method, path, b"\xff\xd8" if method == "POST" else None)[0] == 401, path
        # and /healthz answers anyone
        assert request(port, "GET", "/healthz")[:1] == (200,)
        # and the bearer opens the API and the preview
        status, _, body = request(port, "GET", "/api/streams", headers=bearer)
        assert status == 200 and b'"name":"v"' in body
        wait_for(lambda: request(port, "GET", "/live/v.jpg", headers=bearer)[0] == 200, 60, "the preview")
        # and the login form's cookie opens the page
        status, headers, _ = request(port, "POST", "/login", f"token={token}".encode(),
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303 and token not in headers["set-cookie"]
        cookie = headers["set-cookie"].split(";", 1)[0]
        status, _, body = request(port, "GET", "/", headers={"Cookie": cookie})
        assert status == 200 and b'id="s-v"' in body
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    # then the run ended normally and the token is on no line it printed (debug logging on)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "debug: " in err
    assert token not in out and token not in err


def test_an_open_address_without_a_token_is_refused_before_anything_starts(tmp_path, write_config):
    # given a config with no token
    port = free_port()
    video = make_video(tmp_path / "v.mp4", width=96, height=64, frames=30)
    cfg = write_config([{"name": "v", "source": str(video)}], model=FAST_MODEL)
    # when it is run with --web on every interface
    res = run_cli("run", str(cfg), "-q", "--web", f"0.0.0.0:{port}", timeout=60)
    # then one line names the key, exit code 2, nothing listens and nothing was written
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "output.web.token: required when listening on 0.0.0.0" in res.stderr
    assert not (tmp_path / "out").exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    # and validate says the same of a config that listens there
    cfg = write_config([{"name": "v", "source": str(video)}], output={"dir": str(tmp_path / "out"),
                                                                       "web": "0.0.0.0:8080"})
    res = run_cli("validate", str(cfg), "--no-sources")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "output.web.token: required when listening on 0.0.0.0" in res.stderr
