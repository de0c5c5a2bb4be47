"""Request bodies read with a bound: the declared length is checked before a byte of the body is
read, a chunked body is cut off past the limit, and a client that stalls is let go."""
from __future__ import annotations

import re
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request

BODY_TIMEOUT_S = 30.0  # a client that stops sending mid-body frees what it holds


class Refused(Exception):
    """A request answered with ``status`` and a one-line ``message`` (JSON ``{"error": …}``)."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


class Gone(Exception):
    """The client went away mid-request: nobody to answer."""


def declared_length(request: Request, limit: int, need: str) -> int | None:
    """The body's Content-Length, checked against ``limit`` (``need`` says what is accepted);
    None for a chunked body. The connection is closed on a refusal: what the client still
    sends is not read."""
    values = {v.strip() for v in request.headers.getlist("content-length")}
    text = values.pop() if len(values) == 1 else ""
    if values:  # two different lengths: which body is meant is anyone's guess
        raise Refused(400, "conflicting Content-Length headers", close=True)
    if not text:
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return None
        raise Refused(411, f"Content-Length required: {need}", close=True)
    if not re.fullmatch(r"[0-9]+", text):
        raise Refused(400, f"Content-Length {text[:20]!r} is not a number of bytes", close=True)
    digits = text.lstrip("0") or "0"
    if len(digits) > 12 or int(digits) > limit:
        raise Refused(413, need, close=True)
    if digits == "0":
        raise Refused(400, need, close=True)
    return int(digits)


async def read_body(request: Request, limit: int, need: str) -> bytes:
    """The whole body, at most ``limit`` bytes, within ``BODY_TIMEOUT_S``."""
    n = declared_length(request, limit, need)
    data = bytearray()
    try:
        with anyio.fail_after(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                data += chunk
                if len(data) > limit:
                    raise Refused(413, need, close=True)
    except ClientDisconnect:
        raise Gone() from None
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {BODY_TIMEOUT_S:.0f} s", close=True) from None
    if n is not None and len(data) < n:
        raise Refused(400, f"the upload ended after {len(data)} of {n} bytes", close=True)
    if not data:
        raise Refused(400, need, close=True)
    return bytes(data)


def headers_for(exc: Any) -> dict[str, str]:
    return {"Connection": "close"} if getattr(exc, "close", False) else {}
