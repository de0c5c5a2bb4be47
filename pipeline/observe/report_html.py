"""``report.html`` beside ``report.json``: one self-contained page (inline SVG, no script, no
network fetch) that a person reads after a run.

Per stream: FPS over time (from the label log's decode times, one-second bins), the
end-to-end latency distribution (the sink's histogram), and a timeline of the top-1 label
(coloured bands, the most frequent labels named) with drops (gaps in the frame numbers)
and outages (gaps of more than a second between frames) marked. Above them: the model,
backend, precision and why that precision.
"""
from __future__ import annotations

import csv
import hashlib
import html
import json
import os
from collections import Counter
from typing import Any, Optional

W, H = 860, 160  # chart size (px)
PAD = 40


def _rows(out_dir: str, stream: str) -> list[dict[str, Any]]:
    """(frame, time, top-1 label) of each line of the stream's label log, jsonl or csv."""
    rows: list[dict[str, Any]] = []
    path = os.path.join(out_dir, f"{stream}.jsonl")
    try:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        r = json.loads(line)
                    except ValueError:  # a torn last line of a killed run
                        continue
                    rows.append({"frame": r["frame"], "time": r["time"], "label": r["top"][0]["label"] if r["top"] else ""})
        elif os.path.exists(path[:-6] + ".csv"):
            with open(path[:-6] + ".csv", encoding="utf-8", newline="") as f:
                for r in csv.DictReader(f):
                    rows.append({"frame": int(r["frame"]), "time": float(r["time"]), "label": r.get("label1", "")})
    except OSError:
        pass
    return rows


def _colour(label: str) -> str:
    h = int(hashlib.md5(label.encode()).hexdigest()[:6], 16)
    return f"hsl({h % 360},{55 + h % 30}%,{45 + (h >> 8) % 20}%)"


def _svg(body: str, title: str, ident: str) -> str:
    return (f'<figure><figcaption>{html.escape(title)}</figcaption><svg id="{ident}" xmlns="http://www.w3.org/2000/svg" '
            f'width="{W}" height="{H}" viewBox="0 0 {W} {H}"><rect width="{W}" height="{H}" fill="#fafafa"/>'
            f'{body}</svg></figure>')


def _axis(x_max: float, y_max: float, x_label: str, y_label: str) -> str:
    x0, y0, x1, y1 = PAD, H - 25, W - 10, 10
    return (f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>'
            f'<text x="{x1}" y="{H - 8}" text-anchor="end" font-size="11">{html.escape(x_label)} (max {x_max:.4g})</text>'
            f'<text x="{x0 + 4}" y="{y1 + 2}" font-size="10" fill="#555">{html.escape(y_label)}</text>'
            f'<text x="{x0 - 4}" y="{y1 + 12}" text-anchor="end" font-size="9">{y_max:.3g}</text>')


def fps_chart(rows: list[dict[str, Any]], ident: str, target: float) -> str:
    if len(rows) < 2:
        return _svg('<text x="50" y="80">not enough frames</text>', "FPS over time", ident)
    t0 = rows[0]["time"]
    span = rows[-1]["time"] - t0
    width = 1.0 if span >= 60 else max(span / 60, 0.02)  # one-second bins, finer for short runs
    bins = Counter(int((r["time"] - t0) / width) for r in rows)
    n = max(bins) + 1
    series = [bins.get(i, 0) / width for i in range(n)]
    y_max = max(max(series), target) * 1.1
    sx = (W - PAD - 10) / max(1, n - 1)
    sy = (H - 35) / y_max
    pts = " ".join(f"{PAD + i * sx:.1f},{H - 25 - v * sy:.1f}" for i, v in enumerate(series))
    ty = H - 25 - target * sy
    body = (_axis(n * width, y_max, "seconds", "frames/s") +
            f'<line x1="{PAD}" y1="{ty:.1f}" x2="{W - 10}" y2="{ty:.1f}" stroke="#c33" stroke-dasharray="4"/>'
            f'<text x="{W - 12}" y="{ty - 3:.1f}" text-anchor="end" font-size="10" fill="#c33">target {target:g}</text>'
            f'<polyline class="fps" points="{pts}" fill="none" stroke="#1f6fb2" stroke-width="2"/>')
    return _svg(body, f"FPS over time (bins of {width:.2g} s of decode time)", ident)


def latency_chart(hist: list[list[float]], ident: str) -> str:
    if not hist:
        return _svg('<text x="50" y="80">no latency measured</text>', "latency", ident)
    y_max = max(c for _, c in hist) * 1.1
    x_max = max(ms for ms, _ in hist)
    bw = (W - PAD - 10) / len(hist)
    bars = "".join(f'<rect class="bar" x="{PAD + i * bw:.1f}" y="{H - 25 - c / y_max * (H - 35):.1f}" width="{max(1.0, bw - 1):.1f}" '
                   f'height="{c / y_max * (H - 35):.1f}" fill="#3a9d5d"><title>≤ {ms:.1f} ms: {c:.0f} frames</title></rect>'
                   for i, (ms, c) in enumerate(hist))
    labels = "".join(f'<text x="{PAD + i * bw:.1f}" y="{H - 12}" font-size="9">{ms:.0f}</text>'
                     for i, (ms, _) in enumerate(hist) if i % max(1, len(hist) // 8) == 0)
    return _svg(_axis(x_max, y_max, "ms, end to end (decode → label written)", "frames") + bars + labels,
                "latency distribution", ident)


def label_timeline(rows: list[dict[str, Any]], ident: str) -> str:
    if not rows:
        return _svg('<text x="50" y="80">no frames</text>', "top-1 label over time", ident)
    t0, t1 = rows[0]["time"], max(rows[-1]["time"], rows[0]["time"] + 1e-3)
    sx = (W - PAD - 10) / (t1 - t0)
    bands, marks = [], []
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i]["label"] != rows[start]["label"]:
            x = PAD + (rows[start]["time"] - t0) * sx
            end = rows[i]["time"] if i < len(rows) else t1
            bands.append(f'<rect class="band" x="{x:.1f}" y="20" width="{max(1.0, (end - rows[start]["time"]) * sx):.1f}" '
                         f'height="60" fill="{_colour(rows[start]["label"])}"><title>{html.escape(rows[start]["label"])}'
                         f'</title></rect>')
            start = i
        if 0 < i < len(rows):
            x = PAD + (rows[i]["time"] - t0) * sx
            if rows[i]["frame"] - rows[i - 1]["frame"] > 1:
                marks.append(f'<line class="drop" x1="{x:.1f}" y1="84" x2="{x:.1f}" y2="96" stroke="#d22" stroke-width="2">'
                             f'<title>{rows[i]["frame"] - rows[i - 1]["frame"] - 1} frames dropped</title></line>')
            if rows[i]["time"] - rows[i - 1]["time"] > 1.0:
                marks.append(f'<line class="outage" x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="86" stroke="#000" '
                             f'stroke-dasharray="3"><title>no frame for {rows[i]["time"] - rows[i - 1]["time"]:.1f} s'
                             f'</title></line>')
    common = Counter(r["label"] for r in rows).most_common(8)
    legend = "".join(f'<rect x="{PAD + k * 102}" y="{H - 40}" width="10" height="10" fill="{_colour(lbl)}"/>'
                     f'<text x="{PAD + 14 + k * 102}" y="{H - 31}" font-size="10">{html.escape(lbl[:14])} ({n})</text>'
                     for k, (lbl, n) in enumerate(common))
    note = (f'<text x="{PAD}" y="{H - 12}" font-size="10">{(t1 - t0):.1f} s · red ticks: drops · dashed: '
            f'no frame for over 1 s</text>')
    return _svg("".join(bands) + "".join(marks) + legend + note, "top-1 label over time", ident)


def render(report: dict[str, Any], out_dir: str) -> str:
    m = report.get("model") or {}
    head = " · ".join(html.escape(str(x)) for x in (m.get("backbone"), m.get("backend"), m.get("precision"),
                                                    m.get("device")) if x)
    why = html.escape(str(m.get("precision_reason") or ""))
    parts = []
    for k, (name, s) in enumerate((report.get("streams") or {}).items()):
        rows = _rows(out_dir, name)
        lat = s.get("latency_ms") or {}
        parts.append(
            f'<section><h2>{html.escape(name)}</h2><p>{s.get("frames", 0)} frames · {s.get("sustained_fps", 0):.1f} FPS '
            f'sustained · {s.get("dropped", 0)} dropped · latency p50 {lat.get("p50")} ms, p95 {lat.get("p95")} ms'
            f'{" · " + str(s.get("reconnects")) + " reconnects" if s.get("reconnects") else ""}</p>'
            f'{fps_chart(rows, f"fps-{k}", report.get("target_fps", 30))}'
            f'{latency_chart(s.get("latency_histogram_ms") or [], f"latency-{k}")}'
            f'{label_timeline(rows, f"labels-{k}")}</section>')
    err = report.get("error")
    error = f'<p class="error">error: {html.escape(str(err.get("message") if isinstance(err, dict) else err))}</p>' if err else ""
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>videoclf report</title><style>'
            f'body{{font-family:sans-serif;margin:1.5em;color:#222}}figure{{margin:.5em 0}}figcaption{{font-size:13px;'
            f'color:#555}}.error{{color:#b00}}section{{border-top:1px solid #ccc;margin-top:1em}}</style></head><body>'
            f'<h1>videoclf report</h1><p>{head} · {html.escape(str(m.get("weights", "")))}</p><p>precision: {why}</p>'
            f'<p>{report.get("elapsed_s", 0):.1f} s · bottleneck {html.escape(str(report.get("bottleneck")))}</p>'
            f'{error}{"".join(parts)}</body></html>')


def write_html(report: dict[str, Any], out_dir: str) -> Optional[str]:
    path = os.path.join(out_dir, "report.html")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(render(report, out_dir))
    os.replace(tmp, path)
    return path
