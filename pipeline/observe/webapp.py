"""The web view's routes on Starlette: the page, the stream panel and previews, uploads, the
streams API, health checks and the OpenAPI document (``openapi.py``).

Handlers are async; whatever blocks (reading stats and previews, classifying, the control
object) runs in a worker thread. Errors answer JSON ``{"error": "one line"}``; an unexpected
exception answers 500 and logs one warning line, never a traceback."""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from videoclf.config.outputs import LIVE_DIR
from videoclf.config.schema import Config, StreamConfig, redact
from videoclf.core.errors import ConfigError, InputError, StreamExists, StreamNotFound, VideoclfError
from videoclf.core.runstats import RunStats
from videoclf.observe.control import StreamControl
from videoclf.observe.openapi import openapi
from videoclf.observe.web import MAX_UPLOAD, PAGE, StreamRow, Uploads, render_streams, stream_rows
from videoclf.observe.webauth import RequireToken, TokenAuth, login_routes
from videoclf.observe.webbody import Gone, Refused, headers_for, read_body
from videoclf.observe.webclips import ClipRoutes

log = logging.getLogger("videoclf.observe.web")

NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_JSON = 64 << 10
NO_STORE = {"Cache-Control": "no-store"}


def one_line(exc: BaseException) -> str:
    """An error's message on one line, credentials in URLs redacted."""
    return redact("; ".join(ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()) or type(exc).__name__)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers={**NO_STORE, **(headers or {})})


class WebView:
    """The handlers, bound to a run's config, stats, uploads and control object."""

    def __init__(self, cfg: Config, stats: Callable[[], RunStats], uploads: Uploads, control: StreamControl) -> None:
        self.cfg, self.stats, self.uploads, self.control = cfg, stats, uploads, control
        self.live_dir = os.path.join(cfg.output.dir, LIVE_DIR)

    # -- what the routes read (worker threads) ------------------------------------
    def _running(self) -> dict[str, StreamConfig]:
        return {s.name: s for s in self.control.streams()}

    def _rows(self, pictures: bool = True) -> list[StreamRow]:
        running = self._running()
        return [r for r in stream_rows(self.cfg, self.stats().snapshot(), pictures) if r.name in running]

    def _api_rows(self) -> list[dict[str, Any]]:
        running = self._running()
        return [r.to_api(running[r.name].source) for r in stream_rows(self.cfg, self.stats().snapshot(), False)
                if r.name in running]

    # -- the page ------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        rows = await run_in_threadpool(self._rows)
        return HTMLResponse(PAGE.format(streams=render_streams(rows)), headers=NO_STORE)

    async def panel(self, request: Request) -> Response:
        rows = await run_in_threadpool(self._rows)
        return HTMLResponse(render_streams(rows), headers=NO_STORE)

    async def state(self, request: Request) -> Response:
        rows = await run_in_threadpool(self._rows)
        return JSONResponse({"streams": [r.to_json() for r in rows]}, headers=NO_STORE)

    def _picture(self, name: str) -> bytes | None:
        if not NAME.fullmatch(name) or name not in self._running():  # only a running stream's own file
            return None
        try:
            with open(os.path.join(self.live_dir, name + ".jpg"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    async def picture(self, request: Request) -> Response:
        data = await run_in_threadpool(self._picture, request.path_params["name"])
        if data is None:
            return error(404, "no such stream, or no frame yet")
        return Response(data, media_type="image/jpeg", headers=NO_STORE)

    # -- uploads -------------------------------------------------------------------
    async def classify(self, request: Request) -> Response:
        try:
            data = await read_body(request, MAX_UPLOAD, f"upload an image of 1 byte to {MAX_UPLOAD >> 20} MiB")
        except Refused as exc:
            return error(exc.status, exc.message, headers_for(exc))
        except Gone:
            return Response(status_code=400)
        try:
            top = await run_in_threadpool(self.uploads.classify, data)
        except ValueError as exc:
            return error(400, one_line(exc))
        except Exception as exc:  # the engine, not the upload: one line, and the run goes on
            log.warning("web: an upload was not classified: %s: %s", type(exc).__name__, one_line(exc))
            return error(500, "the image could not be classified")
        return JSONResponse({"top": top}, headers=NO_STORE)

    # -- the streams API -----------------------------------------------------------
    async def streams(self, request: Request) -> Response:
        return JSONResponse({"streams": await run_in_threadpool(self._api_rows)}, headers=NO_STORE)

    async def add_stream(self, request: Request) -> Response:
        try:
            body = await read_body(request, MAX_JSON, "send one stream as a JSON object of at most 64 KiB")
            stream = json.loads(body)
        except Refused as exc:
            return error(exc.status, exc.message, headers_for(exc))
        except Gone:
            return Response(status_code=400)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            return error(400, f"the body is not JSON: {one_line(exc)}")
        if not isinstance(stream, dict):
            return error(400, "the body must be one JSON object: a stream as in the config's streams: list")
        try:
            added = await run_in_threadpool(self.control.add_stream, stream)
        except StreamExists as exc:
            return error(409, one_line(exc))
        except (ConfigError, InputError) as exc:  # not a valid stream, or a file that cannot be opened
            return error(400, one_line(exc))
        except VideoclfError as exc:  # the config file cannot be written, the run is stopping
            return self._failed(exc)
        rows = [r for r in await run_in_threadpool(self._api_rows) if r["name"] == added.name]
        row = rows[0] if rows else StreamRow(added.name, "starting", 0, 0.0, 0, (), None, 0.0, 0).to_api(added.source)
        return JSONResponse(row, 201, headers=NO_STORE)

    async def remove_stream(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not NAME.fullmatch(name):
            return error(404, "no stream of that name")
        try:
            await run_in_threadpool(self.control.remove_stream, name)
        except StreamNotFound as exc:
            return error(404, one_line(exc))
        except StreamExists as exc:  # the run's last stream
            return error(409, one_line(exc))
        except ConfigError as exc:
            return error(400, one_line(exc))
        except VideoclfError as exc:
            return self._failed(exc)
        return Response(status_code=204)

    @staticmethod
    def _failed(exc: VideoclfError) -> Response:
        log.warning("web: a stream change failed: %s", one_line(exc))
        return error(503 if "stopping" in str(exc) else 500, one_line(exc))

    # -- health --------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=NO_STORE)

    async def readyz(self, request: Request) -> Response:
        ok, why = await run_in_threadpool(self.control.ready)
        if ok:
            return JSONResponse({"status": "ready"}, headers=NO_STORE)
        return JSONResponse({"status": "not ready", "reason": why}, 503, headers=NO_STORE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi())


def _by_method(**handlers: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """One endpoint for a path that answers several methods (so a 405's Allow lists them all)."""
    async def endpoint(request: Request) -> Response:
        method = "get" if request.method == "HEAD" else request.method.lower()
        return await handlers[method](request)

    return endpoint


def routes(view: WebView, auth: TokenAuth) -> list[Route]:
    login = login_routes(auth)
    clips = ClipRoutes(view.cfg.output.dir)  # events and their clips
    return [
        Route("/events", clips.page, methods=["GET"]),
        Route("/api/events", clips.events, methods=["GET"]),
        Route("/clips/{name}", clips.clip, methods=["GET"]),
        Route("/", view.page, methods=["GET"]),
        Route("/streams", view.panel, methods=["GET"]),
        Route("/live/{name}.jpg", view.picture, methods=["GET"]),
        Route("/login", _by_method(get=login["form"], post=login["login"]), methods=["GET", "POST"]),
        Route("/api/state", view.state, methods=["GET"]),
        Route("/api/classify", view.classify, methods=["POST"]),
        Route("/api/streams", _by_method(get=view.streams, post=view.add_stream), methods=["GET", "POST"]),
        Route("/api/streams/{name}", view.remove_stream, methods=["DELETE"]),
        Route("/api/openapi.json", view.openapi, methods=["GET"]),
        Route("/healthz", view.healthz, methods=["GET"]),
        Route("/readyz", view.readyz, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, dict(exc.headers or {}))


async def _crash(request: Request, exc: Exception) -> Response:
    log.warning("web: %s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, one_line(exc))
    return error(500, "internal error")


class _Guard:
    """Outermost: Starlette answers an exception with ``_crash`` and then re-raises it, for the
    server to print a traceback; this ends it here (the warning line is logged)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:  # noqa: BLE001 (answered and logged in _crash)
            pass


def build_app(cfg: Config, stats: Callable[[], RunStats], uploads: Uploads, control: StreamControl,
              token: str | None = None) -> ASGIApp:
    """The web view as an ASGI app; ``token``: required on every route but /healthz and /readyz."""
    auth = TokenAuth(token)
    app = Starlette(routes=routes(WebView(cfg, stats, uploads, control), auth),
                    middleware=[Middleware(RequireToken, auth=auth)],
                    exception_handlers={HTTPException: _http_error, Exception: _crash})
    return _Guard(app)
