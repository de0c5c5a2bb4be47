"""The web view's events and clips: recent events (``/events``, ``/api/events``) with links to
their clips, and the clip files themselves (``/clips/{name}``), behind the same token as every
other page. A clip is served only from ``<output.dir>/clips`` and only by a plain file name:
no separator, no ``..``, no link out of the folder."""
from __future__ import annotations

import html
import json
import os
import re
import time
from typing import Any, Optional

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

CLIPS_DIR = "clips"
CLIP_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}\.ts")
TAIL_BYTES = 256 << 10  # the end of events.jsonl that is read: plenty for the newest events
RECENT = 50
NO_STORE = {"Cache-Control": "no-store"}

EVENTS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>videoclf events</title>
<style>body{{font-family:sans-serif;margin:1em;background:#111;color:#eee}}td,th{{padding:.2em .8em;text-align:left}}
a{{color:#9cf}}</style></head><body><h1>videoclf · events</h1><p><a href="/">live</a></p>
<table><tr><th>time</th><th>stream</th><th>label</th><th>score</th><th>clip</th></tr>{rows}</table></body></html>"""


def recent_events(out_dir: str, n: int = RECENT) -> list[dict[str, Any]]:
    """The newest ``n`` events opened (one per event: its ``open`` line), newest first."""
    try:
        with open(os.path.join(out_dir, "events.jsonl"), "rb") as f:
            f.seek(max(os.fstat(f.fileno()).st_size - TAIL_BYTES, 0))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines()[1:] if len(text) >= TAIL_BYTES else text.splitlines():  # the first may be cut
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(event, dict) and event.get("event") == "open":
            out.append(event)
    return [_public(e) for e in reversed(out[-n:])]


def _public(event: dict[str, Any]) -> dict[str, Any]:
    """What the web view shows of an event: its clip as a link of this server, not a disk path."""
    row = {k: event.get(k) for k in ("stream", "label", "peak_score", "start_time", "start_pts", "clip_at_s")}
    clip = event.get("clip")
    row["clip"] = f"/clips/{os.path.basename(clip)}" if isinstance(clip, str) and clip else None
    return row


def render_events(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["start_time"])) if r.get("start_time") else ""
        link = f'<a href="{html.escape(r["clip"])}">clip</a>' if r.get("clip") else ""
        score = f'{r["peak_score"]:.2f}' if isinstance(r.get("peak_score"), (int, float)) else ""
        out.append(f"<tr><td>{when}</td><td>{html.escape(str(r.get('stream')))}</td>"
                   f"<td>{html.escape(str(r.get('label')))}</td><td>{score}</td><td>{link}</td></tr>")
    return "".join(out)


def clip_path(out_dir: str, name: str) -> Optional[str]:
    """The clip file ``name`` in ``<out_dir>/clips``, or None: a name that is not a plain clip name,
    a file that is not there, or one that leads out of the folder (a symlink) is never served."""
    if not CLIP_NAME.fullmatch(name) or ".." in name:
        return None
    folder = os.path.realpath(os.path.join(out_dir, CLIPS_DIR))
    path = os.path.realpath(os.path.join(folder, name))
    if os.path.dirname(path) != folder or not os.path.isfile(path):
        return None
    return path


class ClipRoutes:
    """The handlers, bound to a run's output directory."""

    def __init__(self, out_dir: str) -> None:
        self.dir = out_dir

    async def page(self, request: Request) -> Response:
        rows = await run_in_threadpool(recent_events, self.dir)
        return HTMLResponse(EVENTS_PAGE.format(rows=render_events(rows)), headers=NO_STORE)

    async def events(self, request: Request) -> Response:
        return JSONResponse({"events": await run_in_threadpool(recent_events, self.dir)}, headers=NO_STORE)

    async def clip(self, request: Request) -> Response:
        path = await run_in_threadpool(clip_path, self.dir, request.path_params["name"])
        if path is None:
            return JSONResponse({"error": "no such clip"}, 404, headers=NO_STORE)
        # an MPEG-TS clip still being written grows: its size is read when the answer starts
        return FileResponse(path, media_type="video/mp2t", filename=os.path.basename(path))
