"""The web view's authentication: a bearer token, or the cookie ``/login`` sets.

The cookie holds an HMAC of the token under a key drawn at start (never the token itself), so
it is worthless once the process ends. Tokens are compared in constant time, never read from a
URL's query, and never logged."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from videoclf.observe.web import render_login
from videoclf.observe.webbody import Gone, Refused, headers_for, read_body

COOKIE = "videoclf_session"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login"})  # served to anyone
LOGIN_LIMIT = 4096


class TokenAuth:
    """Whether a request carries the token; ``None`` token: every request does."""

    def __init__(self, token: str | None) -> None:
        self.token = token.encode() if token is not None else None
        self.cookie = hmac.new(secrets.token_bytes(32), self.token, hashlib.sha256).hexdigest() if self.token else ""

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def check_token(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token)

    def allows(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.check_token(given.strip()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self.cookie.encode())


class RequireToken:
    """ASGI middleware: every path but ``OPEN_PATHS`` answers 401 without the token (before any
    body is read); the page ``/`` answers 401 with the login form in its body."""

    def __init__(self, app: ASGIApp, auth: TokenAuth) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self.auth.allows(Request(scope)):
            return await self.app(scope, receive, send)
        if scope["path"] == "/":
            response: Response = HTMLResponse(render_login(), 401)
        else:
            response = JSONResponse({"error": "authentication required: send Authorization: Bearer TOKEN, or log "
                                              "in at /login"}, 401, headers={"WWW-Authenticate": "Bearer"})
        # the body is not read: close, so a large upload's remainder is not waited for
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def login_routes(auth: TokenAuth) -> dict[str, Any]:
    """``GET /login`` (the form) and ``POST /login`` (the right token: the cookie and a 303 to /)."""

    async def form(request: Request) -> Response:
        if not auth.enabled:
            return RedirectResponse("/", 303)
        return HTMLResponse(render_login())

    async def login(request: Request) -> Response:
        if not auth.enabled:
            return RedirectResponse("/", 303)
        try:
            body = await read_body(request, LOGIN_LIMIT, "send the login form (token=…), at most 4 KiB")
        except Refused as exc:
            return HTMLResponse(render_login(exc.message), exc.status, headers=headers_for(exc))
        except Gone:
            return Response(status_code=400)
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        if not auth.check_token(given):
            return HTMLResponse(render_login("wrong token"), 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, auth.cookie, httponly=True, samesite="strict", path="/")
        return response

    return {"form": form, "login": login}
