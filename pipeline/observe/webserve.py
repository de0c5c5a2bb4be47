"""uvicorn in a daemon thread of the supervisor, serving the web view (``webapp.py``).

The socket is bound here, before the thread starts, so a taken port is an error at once and
port 0 gives the real one. uvicorn's own log lines go out at debug level only (it would print
a line per start and per malformed request), and never with a traceback."""
from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from typing import Any, Callable

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from videoclf.config.schema import Config
from videoclf.core.errors import ResourceError
from videoclf.core.runstats import RunStats
from videoclf.observe.control import FixedStreams, StreamControl
from videoclf.observe.web import Uploads
from videoclf.observe.webapp import build_app

log = logging.getLogger("videoclf.observe.web")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0


class _Debug(logging.Filter):
    """uvicorn's records, lowered to debug and without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _quiet_uvicorn() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Debug) for f in logger.filters):
            logger.addFilter(_Debug())


class _Protocol(H11Protocol):
    """h11 with the web view's answers: a request HTTP cannot parse (a bad or conflicting
    Content-Length, a garbage request line, a header without a colon) gets a 400 whose JSON
    says what h11 found, as the app's own refusals do."""

    def send_400_response(self, msg: str) -> None:
        found = sys.exc_info()[1]  # called from h11's RemoteProtocolError handler
        detail = f"invalid HTTP request: {found}" if isinstance(found, h11.RemoteProtocolError) else msg
        body = json.dumps({"error": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # a response had started already: nothing more to say
            pass
        self.transport.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket; OSError when the address is taken or not ours."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=128)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class WebServer:
    """The web view's server. ``server_address`` is (host, real port); ``shutdown()`` stops it
    within a few seconds; ``server_close()`` is a no-op (the interface of the stdlib servers
    ``Services`` keeps beside it)."""

    def __init__(self, host: str, port: int, app: Any) -> None:
        _quiet_uvicorn()
        self.sock = _listen(host, port)
        self.server_address = (host, self.sock.getsockname()[1])
        config = uvicorn.Config(app, interface="asgi3", http=_Protocol, loop="asyncio", lifespan="off",
                                log_config=None, access_log=False, proxy_headers=False, server_header=False,
                                limit_concurrency=200, timeout_keep_alive=5, timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="web", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.shutdown()
                raise ResourceError(f"output.web: the server did not start on {host}:{self.server_address[1]}")
            time.sleep(0.01)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # noqa: BLE001 (a thread's last word: one line, never a traceback)
            log.warning("web: the server stopped: %s: %s", type(exc).__name__, exc)

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT_S)
        if self.thread.is_alive():  # connections that would not close: drop them
            self.server.force_exit = True
            self.thread.join(STOP_TIMEOUT_S)
        self.sock.close()

    def server_close(self) -> None:
        pass


def start_web(host: str, port: int, cfg: Config, stats: Callable[[], RunStats], stages: Any,
              control: StreamControl | None = None) -> WebServer:
    """Serve ``cfg``'s web view on host:port (port 0: any free one) until ``shutdown()``."""
    web = cfg.output.web
    token = web.token.get_secret_value() if web is not None and web.token is not None else None
    app = build_app(cfg, stats, Uploads(cfg, stages), control or FixedStreams(cfg), token)
    return WebServer(host, port, app)
