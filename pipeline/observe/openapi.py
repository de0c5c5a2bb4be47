"""The HTTP API's OpenAPI document (``GET /api/openapi.json``), built by hand: the POST body's
schema is the config's own stream model, so the two cannot drift apart."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from videoclf.config.schema import StreamConfig

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_ROW = {"type": "object", "properties": {
    "name": {"type": "string"}, "source": {"type": "string", "description": "credentials redacted"},
    "status": {"type": "string", "enum": ["starting", "live", "connecting", "reconnecting", "gave up", "ended"]},
    "fps": {"type": "number"}, "frames": {"type": "integer"}, "dropped": {"type": "integer"},
    "reconnects": {"type": "integer"},
    "top": {"type": "array", "description": "top-k of the newest classified frame", "items": {
        "type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _answers(**codes: str) -> dict[str, Any]:
    """Error answers by status (``e404="…"``), each a JSON {"error": …}."""
    return {code[1:]: {"description": text, **_json({"$ref": "#/components/schemas/Error"})}
            for code, text in codes.items()}


def _op(summary: str, ok: dict[str, Any], *, public: bool = False, **errors: str) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_answers(**errors)}}
    if public:
        op["security"] = []  # no token needed
    else:
        op["responses"]["401"] = {"description": "no token (when output.web.token is set)"}
    return op


def _html(text: str) -> dict[str, Any]:
    return {"200": {"description": text, "content": {"text/html": {}}}}


def _paths() -> dict[str, Any]:
    return {
        "/": {"get": _op("the live page (server-rendered; refreshes /streams every second)", _html("the page"))},
        "/streams": {"get": _op("the page's stream panel", _html("HTML of every stream's card"))},
        "/live/{name}.jpg": {"get": {**_op("a running stream's latest preview picture",
                                           {"200": {"description": "JPEG", "content": {"image/jpeg": {}}}},
                                           e404="no running stream of that name, or no frame yet"),
                                     "parameters": [{"name": "name", "in": "path", "required": True,
                                                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}}]}},
        "/login": {"get": _op("the login form", _html("the form"), public=True),
                   "post": {**_op("log in: sets an HttpOnly, SameSite=Strict session cookie",
                                  {"303": {"description": "logged in: to /"}}, public=True),
                            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                                "type": "object", "properties": {"token": {"type": "string"}}}}}}}},
        "/api/state": {"get": _op("every stream as the page shows it", {"200": {"description": "streams"}})},
        "/api/classify": {"post": {**_op("classify one image as a stream's frame is classified",
                                         {"200": {"description": "top-k", **_json({"type": "object"})}},
                                         e400="not an image, or a bad length", e411="no Content-Length",
                                         e413="over 16 MiB", e500="the engine failed"),
                                   "requestBody": {"required": True, "content": {"image/*": {}}}}},
        "/api/streams": {
            "get": _op("the running streams", {"200": {"description": "one row per stream", **_json(
                {"type": "object", "properties": {"streams": {"type": "array", "items": {"$ref": "#/components/schemas/Stream"}}}})}}),
            "post": {**_op("add a stream", {"201": {"description": "added", **_json({"$ref": "#/components/schemas/Stream"})}},
                           e400="not JSON, not an object, or not a valid stream", e409="a stream of that name runs",
                           e413="over 64 KiB"),
                     "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/StreamConfig"})}}},
        "/api/streams/{name}": {"delete": {**_op("stop and remove a stream", {"204": {"description": "removed"}},
                                                 e400="the config file cannot hold the change", e404="no stream of that name",
                                                 e409="the run's last stream (a run needs one)"),
                                           "parameters": [{"name": "name", "in": "path", "required": True,
                                                           "schema": {"type": "string"}}]}},
        "/events": {"get": _op("the newest events, with links to their clips", _html("the events page"))},
        "/api/events": {"get": _op("the newest events opened, newest first (clip: a /clips/ link or null)",
                                   {"200": {"description": "events", **_json({"type": "object"})}})},
        "/clips/{name}": {"get": {**_op("an event clip (MPEG-TS, the camera's own stream)",
                                        {"200": {"description": "the clip", "content": {"video/mp2t": {}}}},
                                        e404="no clip of that name in the clips folder"),
                                  "parameters": [{"name": "name", "in": "path", "required": True,
                                                  "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]*\\.ts$"}}]}},
        "/api/openapi.json": {"get": _op("this document", {"200": {"description": "OpenAPI 3.1"}})},
        "/healthz": {"get": _op("the process serves", {"200": {"description": '{"status": "ok"}'}}, public=True)},
        "/readyz": {"get": _op("frames are being classified", {"200": {"description": '{"status": "ready"}'}},
                               public=True, e503="not ready: the reason")},
    }


@lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    stream = StreamConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = stream.pop("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "videoclf", "description": "the live web view and HTTP API of a run"},
        "paths": _paths(),
        "components": {
            "schemas": {"Error": _ERROR, "Stream": _ROW, "StreamConfig": stream, **defs},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "videoclf_session"}},
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
