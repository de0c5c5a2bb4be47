"""Live web view: a stdlib ThreadingHTTPServer in the supervisor, no build step, no JS deps.

``GET /`` renders every stream (latest preview JPEG written by the outputs sink, top-3,
FPS, drops, status) on the server, so the page is complete without scripts; a few lines
of JS re-fetch the stream panel every second. ``POST /api/classify`` takes an image and
answers its top-k, prepared and classified exactly as a stream's frame (``Uploads``): the
engine is built lazily in this process on the first upload (uploads are rare and must not
disturb the classifier's batches)."""
from __future__ import annotations

import html
import json
import logging
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from videoclf.config.outputs import LIVE_DIR
from videoclf.config.schema import Config
from videoclf.core.runstats import RunStats

log = logging.getLogger(__name__)

MAX_UPLOAD = 16 << 20


def _pictured(cfg: Config, stream: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(cfg.output.dir, LIVE_DIR, f"{stream}.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class StreamRow:
    """One stream as the web view, MQTT state and the terminal table show it."""

    name: str
    status: str  # starting | live | connecting | reconnecting | gave up | ended
    frames: int
    fps: float
    dropped: int
    top: tuple[tuple[str, float], ...]
    pts: Optional[float]
    input_fps: float
    reconnects: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stream_rows(cfg: Config, stats: RunStats, pictures: bool = True) -> list[StreamRow]:
    """One row per stream. ``pictures``: take the labels of the frame the preview JPEG shows,
    when one is written."""
    rows = []
    for i, s in enumerate(cfg.streams):
        t, dec = stats.stream(i), stats.decoder(i)
        state = dec.live.state if dec.live is not None else None
        if t.end:
            status = "ended"
        elif state in ("reconnecting", "connecting", "gave_up"):  # live sources report their state
            status = state.replace("_", " ")
        else:
            status = "live" if t.frames else "starting"
        pictured = _pictured(cfg, s.name) if pictures else None  # the labels of the frame the picture shows
        if pictured:
            top, pts = tuple(tuple(x) for x in pictured.get("top") or ()), pictured.get("pts")
        else:
            top, pts = (t.live.top, t.live.pts) if t.live is not None else ((), None)
        rows.append(StreamRow(name=s.name, status=status, frames=t.frames, fps=t.fps_now, dropped=stats.dropped(i),
                              top=top or t.top, pts=pts, input_fps=dec.live.input_fps if dec.live else 0.0,
                              reconnects=dec.live.reconnects if dec.live else 0))
    return rows


def render_streams(rows: list[StreamRow]) -> str:
    cards = []
    for r in rows:
        name = html.escape(r.name)
        tops = "".join(f"<li><span class=label>{html.escape(str(lbl))}</span> <b>{s:.2f}</b></li>" for lbl, s in r.top[:3])
        cards.append(
            f'<div class="card" id="s-{name}"><h2>{name} <small class="{r.status}">{r.status}</small></h2>'
            f'<img src="/live/{name}.jpg?f={r.frames}" alt="latest frame of {name}">'
            f'<ol>{tops or "<li>waiting for frames…</li>"}</ol>'
            f'<p>{r.fps:.1f} fps · {r.frames} frames · {r.dropped} dropped</p></div>')
    return "".join(cards)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>videoclf live</title>
<style>body{{font-family:sans-serif;margin:1em;background:#111;color:#eee}}#streams{{display:flex;flex-wrap:wrap;gap:1em}}
.card{{background:#222;padding:.5em 1em;border-radius:6px;max-width:660px}}img{{max-width:640px;width:100%;background:#000}}
.live{{color:#6f6}}.ended{{color:#aaa}}.reconnecting,.connecting,.starting{{color:#fc6}}b{{color:#9cf}}</style></head>
<body><h1>videoclf · live</h1><div id="streams">{streams}</div>
<h2>Classify an image</h2><input type="file" id="file" accept="image/*"> <span id="result"></span>
<script>
setInterval(async()=>{{try{{const r=await fetch('/streams');if(r.ok)document.getElementById('streams').innerHTML=await r.text();}}catch(e){{}}}},1000);
document.getElementById('file').onchange=async(e)=>{{const f=e.target.files[0];if(!f)return;const out=document.getElementById('result');
out.textContent='…';const r=await fetch('/api/classify',{{method:'POST',body:f}});const j=await r.json();
out.textContent=j.error?j.error:j.top.map(t=>t.label+' '+t.score.toFixed(2)).join(' · ');}};
</script></body></html>"""


class Uploads:
    """An uploaded image classified exactly as a stream's frame: decoded by FFmpeg (PyAV), the
    same crop and libswscale resize as the decoders (``to_model_rgb``), the run's own engine,
    backend and precision (``open_backend`` of the run's model config: a warm cache loads the
    same export), and the run's ``top_k``. The engine is built on the first upload, on one
    thread, so the pipeline pays nothing until someone uploads."""

    def __init__(self, cfg: Config, stages: Any) -> None:
        """``stages``: what the composition root lends (``image_to_model_input``, ``open_engine``,
        ``top_k``: the module videoclf.plan.compose): this layer imports no stage itself."""
        self.cfg = cfg.model
        self.stages = stages
        self.lock = threading.Lock()
        self.engine: Any = None
        self.labels: list[str] = []

    def classify(self, data: bytes) -> list[dict[str, Any]]:
        image_to_model_input, open_engine, top_k = (self.stages.image_to_model_input, self.stages.open_engine,
                                                    self.stages.top_k)
        m = self.cfg
        x = image_to_model_input(data, m)
        with self.lock:  # one upload at a time, on an engine of its own
            if self.engine is None:
                opened = open_engine(m.model_copy(update={"threads": 1, "max_batch": 1, "engine_streams": 1}))
                self.engine, self.labels = opened.backend, opened.labels
            logits = self.engine.run(x)
        scores, idx = top_k(logits, m.top_k)
        return [{"label": self.labels[int(i)], "score": round(float(v), 5)} for v, i in zip(scores[0], idx[0])]


class _Handler(BaseHTTPRequestHandler):
    """The web view's requests; ``make_handler`` binds a run's config, stats and uploads."""

    cfg: Config
    stats: Callable[[], RunStats]
    uploads: Uploads
    names: frozenset[str]
    live_dir: str
    server_version = "videoclf"
    timeout = 30  # a client that stops sending mid-request frees its thread

    def log_message(self, fmt: str, *args: Any) -> None:  # requests are not worth a log line each
        log.debug("web: " + fmt, *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        rows = stream_rows(self.cfg, self.stats().snapshot())
        if path == "/":
            self._send(200, PAGE.format(streams=render_streams(rows)).encode(), "text/html; charset=utf-8")
        elif path == "/streams":
            self._send(200, render_streams(rows).encode(), "text/html; charset=utf-8")
        elif path == "/api/state":
            self._json(200, {"streams": [r.to_json() for r in rows]})
        elif path.startswith("/live/") and path.endswith(".jpg") and path[6:-4] in self.names:
            try:
                with open(os.path.join(self.live_dir, path[6:-4] + ".jpg"), "rb") as f:
                    self._send(200, f.read(), "image/jpeg")
            except FileNotFoundError:
                self._send(404, b"no frame yet", "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def _refuse(self, code: int, message: str) -> None:
        """A 4xx, and the connection closed: what the client still sends is not read."""
        self.close_connection = True
        self._json(code, {"error": message})

    def _upload_size(self) -> int | None:
        """The body's declared length, or None once the request was refused for it."""
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        text = values.pop() if len(values) == 1 else ""
        limit = f"upload an image of 1 byte to {MAX_UPLOAD >> 20} MiB"
        if values:  # two different lengths: which body is meant is anyone's guess
            return self._refuse(400, "conflicting Content-Length headers")
        if not text:
            return self._refuse(411, f"Content-Length required: {limit}")
        if not re.fullmatch(r"[0-9]+", text):
            return self._refuse(400, f"Content-Length {text[:20]!r} is not a number of bytes")
        digits = text.lstrip("0") or "0"
        if len(digits) > 9 or int(digits) > MAX_UPLOAD:  # int() of a 5000-digit header would raise
            return self._refuse(413, limit)
        if digits == "0":
            return self._refuse(400, limit)
        return int(digits)

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] != "/api/classify":
            return self._send(404, b"not found", "text/plain")
        n = self._upload_size()
        if n is None:
            return None
        try:
            data = self.rfile.read(n)
        except OSError:  # the client stalled past the timeout or went away: nobody to answer
            self.close_connection = True
            return None
        if len(data) < n:
            return self._refuse(400, f"the upload ended after {len(data)} of {n} bytes")
        try:
            top = self.uploads.classify(data)
        except ValueError as exc:
            return self._json(400, {"error": str(exc)})
        except Exception as exc:  # the engine, not the upload: one line, and the run goes on
            log.warning("web: an upload was not classified: %s", _one_line(exc))
            return self._json(500, {"error": "the image could not be classified"})
        return self._json(200, {"top": top})


def make_handler(cfg: Config, stats: Callable[[], RunStats], uploads: Uploads) -> type:
    return type("Handler", (_Handler,), {
        "cfg": cfg, "stats": staticmethod(stats), "uploads": uploads,
        "names": frozenset(s.name for s in cfg.streams), "live_dir": os.path.join(cfg.output.dir, LIVE_DIR)})


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback to stderr for any error in a handler: one line
        instead, none for a client that went away."""
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, (ConnectionError, TimeoutError)):
            log.warning("web: a request from %s failed: %s", client_address[0], _one_line(exc))


def start_web(host: str, port: int, cfg: Config, stats: Callable[[], RunStats], stages: Any) -> ThreadingHTTPServer:
    server = _Server((host, port), make_handler(cfg, stats, Uploads(cfg, stages)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="web", daemon=True).start()
    return server
