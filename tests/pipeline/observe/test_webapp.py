"""The web view's server in this process: uvicorn on a real socket, real requests over HTTP."""
from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from typing import Any

import pytest

from helpers_proc import request
from videoclf.config.load import parse_config
from videoclf.core.runstats import RunStats
from videoclf.observe.control import FixedStreams
from videoclf.observe.openapi import openapi
from videoclf.observe.web import Uploads
from videoclf.observe.webapp import WebView, routes
from videoclf.observe.webauth import TokenAuth
from videoclf.observe.webserve import WebServer, start_web
from videoclf.plan import compose

TOKEN = "s3cret-token-0123456789"


def _config(tmp_path, token: str | None = None):
    web: dict[str, Any] = {"listen": "127.0.0.1:8080", **({"token": token} if token else {})}
    return parse_config({"streams": [{"name": "cam", "source": "rtsp://user:pw@10.0.0.9/live"}],
                         "output": {"dir": str(tmp_path / "out"), "web": web}})


@pytest.fixture
def serve(tmp_path):
    """start(token=None, control=None) → the port of a web server on loopback; stopped after."""
    servers: list[WebServer] = []

    def start(token: str | None = None, control: Any = None) -> int:
        cfg = _config(tmp_path, token)
        servers.append(start_web("127.0.0.1", 0, cfg, lambda: RunStats(["cam"]), compose, control))
        return servers[-1].server_address[1]

    yield start
    for s in servers:
        s.shutdown()


def test_the_openapi_document_lists_every_route_and_method(tmp_path):
    # given the app's routes
    view = WebView(_config(tmp_path), lambda: RunStats(["cam"]), Uploads(_config(tmp_path), compose),
                   FixedStreams(_config(tmp_path)))
    served = {(r.path, m.lower()) for r in routes(view, TokenAuth(None)) for m in r.methods or () if m != "HEAD"}
    # when the OpenAPI document is built, then it names each (path, method), and nothing else
    doc = openapi()
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served
    # and the POST body is the config's own stream schema
    assert doc["components"]["schemas"]["StreamConfig"]["required"] == ["name", "source"]


def test_the_server_serves_on_a_free_port_and_stops_within_seconds(serve):
    # given a server started on port 0
    port = serve()
    # then it answers on the real port it reports
    assert request(port, "GET", "/healthz")[:1] == (200,)
    assert json.loads(request(port, "GET", "/api/openapi.json")[2])["openapi"].startswith("3.")


def test_shutdown_is_bounded_with_a_client_connected(tmp_path):
    # given a server and a client holding a keep-alive connection
    server = start_web("127.0.0.1", 0, _config(tmp_path), lambda: RunStats(["cam"]), compose)
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    # when it is shut down, then it is gone within a few seconds and the port is free again
    t0 = time.monotonic()
    server.shutdown()
    assert time.monotonic() - t0 < 5 and not server.thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    conn.close()


def test_without_a_token_every_route_needs_it_but_the_health_checks(serve):
    # given a server with a token
    port = serve(TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    # when a request carries nothing, then it is refused; the page with the login form
    status, _, body = request(port, "GET", "/")
    assert status == 401 and b'<form method="post" action="/login">' in body
    for method, path in [("GET", "/api/streams"), ("POST", "/api/classify"), ("GET", "/live/cam.jpg"),
                         ("GET", "/api/state"), ("GET", "/streams"), ("GET", "/api/openapi.json"),
                         ("DELETE", "/api/streams/cam"), ("GET", f"/api/streams?token={TOKEN}"),
                         ("GET", f"/?token={TOKEN}")]:
        assert request(port, method, path, b"x" if method == "POST" else None)[0] == 401, (method, path)
    # and a wrong bearer is refused too
    assert request(port, "GET", "/api/streams", headers={"Authorization": "Bearer " + TOKEN[:-1] + "X"})[0] == 401
    # then the health checks answer anyone
    assert request(port, "GET", "/healthz")[0] == 200 and request(port, "GET", "/readyz")[0] == 200
    # and the bearer opens the API: the source's password redacted
    status, _, body = request(port, "GET", "/api/streams", headers=bearer)
    assert status == 200 and json.loads(body)["streams"][0]["source"] == "rtsp://user:***@10.0.0.9/live"


def test_logging_in_sets_a_cookie_that_is_not_the_token(serve):
    port = serve(TOKEN)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # given the login form
    assert b'name="token"' in request(port, "GET", "/login")[2]
    # when a wrong token is posted, then 401 and the form again
    status, headers, body = request(port, "POST", "/login", b"token=nope", form)
    assert status == 401 and "set-cookie" not in headers and b"wrong token" in body
    # when the right one is posted, then a strict HttpOnly cookie and a redirect to the page
    status, headers, _ = request(port, "POST", "/login", f"token={TOKEN}".encode(), form)
    cookie = headers["set-cookie"]
    assert status == 303 and headers["location"] == "/"
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and TOKEN not in cookie
    # and the page opens with it
    session = cookie.split(";", 1)[0]
    status, _, body = request(port, "GET", "/", headers={"Cookie": session})
    assert status == 200 and b"videoclf" in body and b"cam" in body
    # and a forged cookie does not
    assert request(port, "GET", "/", headers={"Cookie": session[:-4] + "beef"})[0] == 401


class _Broken(FixedStreams):
    """A control object whose readiness check fails: the handler's exception."""

    def ready(self) -> tuple[bool, str]:
        raise RuntimeError("the plane is gone\nsecond line")


def test_an_exception_in_a_handler_is_a_500_and_one_warning_line(serve, tmp_path, caplog):
    # given a control object that raises
    port = serve(control=_Broken(_config(tmp_path)))
    # when /readyz asks it
    with caplog.at_level(logging.DEBUG):
        status, _, body = request(port, "GET", "/readyz")
    # then a JSON 500, one warning line naming the route, no traceback
    assert status == 500 and json.loads(body) == {"error": "internal error"}
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "GET /readyz failed: RuntimeError: the plane is gone; second line" in \
        warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    # and the server goes on
    assert request(port, "GET", "/healthz")[0] == 200


def test_the_streams_api_maps_the_controls_errors(serve):
    port = serve()
    post = lambda body: request(port, "POST", "/api/streams", body, {"Content-Type": "application/json"})  # noqa: E731
    assert post(b'{"name": "cam", "source": "x"')[0] == 400  # not JSON
    assert post(b'["cam"]')[0] == 400  # not an object
    assert post(b"{}" + b" " * (64 << 10))[0] == 413  # over the JSON limit
    assert request(port, "DELETE", "/api/streams/nosuch")[0] == 404
    assert request(port, "DELETE", "/api/streams/cam")[0] == 400  # this run cannot remove it


def test_importing_videoclf_loads_no_web_server():
    # given the package, the supervisor, the API and the CLI imported: then neither is loaded
    import subprocess
    import sys

    code = ("import sys, videoclf, videoclf.supervision.supervisor, videoclf.api, videoclf.cli.main; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
