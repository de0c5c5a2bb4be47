"""Live web view: what it shows, without the server (``webapp.py``: the routes on Starlette,
``webserve.py``: uvicorn in a thread of the supervisor). No build step, no JS deps.

``GET /`` renders every stream (latest preview JPEG written by the outputs sink, top-3,
FPS, drops, status) on the server, so the page is complete without scripts; a few lines
of JS re-fetch the stream panel every second. ``POST /api/classify`` takes an image and
answers its top-k, prepared and classified exactly as a stream's frame (``Uploads``): the
engine is built lazily in this process on the first upload (uploads are rare and must not
disturb the classifier's batches)."""
from __future__ import annotations

import html
import json
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any, Optional

from videoclf.config.outputs import LIVE_DIR
from videoclf.config.schema import Config
from videoclf.config.schema import redact
from videoclf.config.zones import logged_streams
from videoclf.core.runstats import RunStats

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
    status: str  # starting | live | connecting | reconnecting | gave up | ended | removed
    frames: int
    fps: float
    dropped: int
    top: tuple[tuple[str, float], ...]
    pts: Optional[float]
    input_fps: float
    reconnects: int
    decoded: int = 0  # frames out of the decoder, classified or not
    skipped: int = 0  # of those, not classified by choice (rate, keyframes only, motion gate); not "dropped"
    # the camera's roi or zones, drawn on its picture: (name, x, y, w, h, this row's own), and its frame size
    regions: tuple[tuple[str, int, int, int, int, bool], ...] = ()
    size: Optional[tuple[int, int]] = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_api(self, source: str) -> dict[str, Any]:
        """The row as ``GET /api/streams`` answers it: the source with its credentials redacted,
        the newest labels as {label, score}."""
        return {"name": self.name, "source": redact(source), "status": self.status, "fps": round(self.fps, 2),
                "frames": self.frames, "decoded": self.decoded, "skipped": self.skipped, "dropped": self.dropped,
                "reconnects": self.reconnects,
                "top": [{"label": str(lbl), "score": round(float(s), 5)} for lbl, s in self.top]}


def stream_rows(cfg: Config, stats: RunStats, pictures: bool = True) -> list[StreamRow]:
    """One row per stream. ``pictures``: take the labels of the frame the preview JPEG shows,
    when one is written."""
    rows = []
    # the run's streams by index: those added while it goes on included, removed ones kept
    for i, name in enumerate(stats.names or [s.name for s in cfg.streams]):
        t, dec = stats.stream(i), stats.decoder(i)
        state = dec.live.state if dec.live is not None else None
        if t.end:
            status = "removed" if t.end == "removed" else "ended"
        elif state in ("reconnecting", "connecting", "gave_up"):  # live sources report their state
            status = state.replace("_", " ")
        else:
            status = "live" if t.frames else "starting"
        pictured = _pictured(cfg, name) if pictures else None  # the labels of the frame the picture shows
        if pictured:
            top, pts = tuple(tuple(x) for x in pictured.get("top") or ()), pictured.get("pts")
        else:
            top, pts = (t.live.top, t.live.pts) if t.live is not None else ((), None)
        rows.append(StreamRow(name=name, status=status, frames=t.frames, fps=t.fps_now, dropped=stats.dropped(i),
                              top=top or t.top, pts=pts, input_fps=dec.live.input_fps if dec.live else 0.0,
                              reconnects=dec.live.reconnects if dec.live else 0,
                              decoded=dec.counts.decoded or dec.counts.items,
                              skipped=dec.counts.skipped + dec.counts.gated, regions=_regions(cfg, name),
                              size=_frame_size(dec.source)))
    return rows


def _regions(cfg: Config, name: str) -> tuple[tuple[str, int, int, int, int, bool], ...]:
    """The regions of logged stream ``name``'s camera: all its zones (its own marked), or its roi."""
    lg = next((x for x in logged_streams(cfg.streams) if x.name == name), None)
    if lg is None:
        return ()
    s = cfg.streams[lg.stream]
    if s.zones:
        return tuple((z.name, z.x, z.y, z.w, z.h, k == lg.zone) for k, z in enumerate(s.zones))
    return (("roi", s.roi.x, s.roi.y, s.roi.w, s.roi.h, True),) if s.roi is not None else ()


def _frame_size(source: Optional[dict[str, Any]]) -> Optional[tuple[int, int]]:
    w, h = (source or {}).get("width"), (source or {}).get("height")
    return (int(w), int(h)) if w and h else None


def _overlay(r: StreamRow) -> str:
    """The regions as an SVG over the picture, in the source's pixels (the preview keeps the
    frame's aspect, letterboxed when it differs: ``meet`` places the SVG the same way)."""
    if not r.regions or r.size is None:
        return ""
    w, h = r.size
    font = max(10, h // 24)
    shapes = "".join(
        f'<rect x="{x}" y="{y}" width="{zw}" height="{zh}" class="{"own" if own else "other"}"/>'
        f'<text x="{x + font // 4}" y="{y + font}" font-size="{font}">{html.escape(name)}</text>'
        for name, x, y, zw, zh, own in r.regions)
    return f'<svg class="zones" viewBox="0 0 {w} {h}" preserveAspectRatio="xMidYMid meet">{shapes}</svg>'


def render_streams(rows: list[StreamRow]) -> str:
    cards = []
    for r in rows:
        name = html.escape(r.name)
        skipped = f" of {r.decoded} decoded" if r.skipped else ""  # a rate or a gate: the rest passed over
        tops = "".join(f"<li><span class=label>{html.escape(str(lbl))}</span> <b>{s:.2f}</b></li>" for lbl, s in r.top[:3])
        cards.append(
            f'<div class="card" id="s-{name}"><h2>{name} <small class="{r.status}">{r.status}</small></h2>'
            f'<div class="pic"><img src="/live/{name}.jpg?f={r.frames}" alt="latest frame of {name}">{_overlay(r)}</div>'
            f'<ol>{tops or "<li>waiting for frames…</li>"}</ol>'
            f'<p>{r.fps:.1f} fps · {r.frames} frames{skipped} · {r.dropped} dropped</p></div>')
    return "".join(cards)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>videoclf live</title>
<style>body{{font-family:sans-serif;margin:1em;background:#111;color:#eee}}#streams{{display:flex;flex-wrap:wrap;gap:1em}}
.card{{background:#222;padding:.5em 1em;border-radius:6px;max-width:660px}}img{{max-width:640px;width:100%;background:#000;display:block}}
.pic{{position:relative;max-width:640px}}.zones{{position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none}}
.zones rect{{fill:none;stroke:#fc6;stroke-width:.4%;stroke-dasharray:2% 1%}}.zones rect.own{{stroke:#6f6;stroke-dasharray:none}}
.zones text{{fill:#fff;paint-order:stroke;stroke:#000;stroke-width:2px}}
.live{{color:#6f6}}.ended{{color:#aaa}}.reconnecting,.connecting,.starting{{color:#fc6}}b{{color:#9cf}}</style></head>
<body><h1>videoclf · live</h1><p><a href="/events" style="color:#9cf">events and clips</a></p><div id="streams">{streams}</div>
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


LOGIN = """<!doctype html><html><head><meta charset="utf-8"><title>videoclf · log in</title>
<style>body{{font-family:sans-serif;margin:2em;background:#111;color:#eee}}input{{font-size:1em}}.err{{color:#f66}}</style>
</head><body><h1>videoclf · live</h1><p class="err">{message}</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autofocus></label>
<button type="submit">Log in</button></form></body></html>"""


def render_login(message: str = "") -> str:
    return LOGIN.format(message=html.escape(message))
