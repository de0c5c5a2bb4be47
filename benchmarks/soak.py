"""Soak: run the pipeline for a while and sample every videoclf process's RSS, open file
descriptors and the run's /dev/shm usage into a CSV and an SVG plot.

    python -m benchmarks.soak CONFIG --minutes 30 --every 60 --out soak/

The closing lines report RSS growth after warm-up (first sample after --warmup seconds vs
last) and fd / shm growth. Without live cameras, use a file stream with ``loop: true``.
"""
from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def sample(pid: int) -> list[dict]:
    """One row per process of the run (the supervisor and its stages) plus a /dev/shm row."""
    rows, t = [], round(time.time(), 3)
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return rows
    for p in procs:
        try:
            name = " ".join(p.cmdline()).removeprefix("videoclf: ").strip()
            if p.pid == pid:
                name = "supervisor"
            elif "resource_tracker" in name:
                name = "resource_tracker"
            rows.append({"t": t, "process": name, "rss_mb": round(p.memory_info().rss / 2**20, 2), "fds": p.num_fds()})
        except psutil.Error:  # a stage being restarted
            continue
    shm = [f for f in os.listdir("/dev/shm") if f.startswith(f"videoclf_{pid}_")]
    used = sum(os.stat(f"/dev/shm/{f}").st_blocks * 512 for f in shm)
    rows.append({"t": t, "process": "/dev/shm", "rss_mb": round(used / 2**20, 2), "fds": len(shm)})
    return rows


def write_svg(rows: list[dict], path: Path) -> None:
    """A dependency-free line plot of RSS per process over time."""
    series: dict[str, list[tuple[float, float]]] = {}
    t0 = min(r["t"] for r in rows)
    for r in rows:
        series.setdefault(r["process"], []).append((r["t"] - t0, r["rss_mb"]))
    tmax = max(x for s in series.values() for x, _ in s) or 1
    ymax = max(y for s in series.values() for _, y in s) or 1
    w, h, colors = 800, 400, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 260}" height="{h + 60}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="15">RSS (MiB, max {ymax:.0f}) over {tmax:.0f} s</text>',
           f'<rect x="40" y="20" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for i, (name, pts) in enumerate(sorted(series.items())):
        c = colors[i % len(colors)]
        line = " ".join(f"{40 + w * x / tmax:.1f},{20 + h - h * y / ymax:.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{line}"/>')
        out.append(f'<text x="{w + 50}" y="{35 + 16 * i}" fill="{c}">{name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


def summarize(rows: list[dict], warmup_s: float) -> dict[str, dict]:
    """Per process: RSS growth after warm-up (%), fd growth and (for /dev/shm) segment growth."""
    t0 = min(r["t"] for r in rows)
    out = {}
    for name in sorted({r["process"] for r in rows}):
        mine = [r for r in rows if r["process"] == name]
        warm = [r for r in mine if r["t"] - t0 >= warmup_s] or mine
        first, last = warm[0], warm[-1]
        out[name] = {"rss_first": first["rss_mb"], "rss_last": last["rss_mb"],
                     "rss_growth_pct": round(100 * (last["rss_mb"] - first["rss_mb"]) / max(first["rss_mb"], 1e-9), 2),
                     "fds_first": first["fds"], "fds_last": last["fds"], "fds_max": max(r["fds"] for r in warm)}
    return out


def soak(config: str, seconds: float, every: float, out: Path, warmup_s: float) -> tuple[list[dict], int]:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", config, "-q", "-o", str(out / "run"),
                             "--duration", str(seconds + 30)], cwd=str(ROOT))
    rows: list[dict] = []
    t_end = time.monotonic() + seconds
    try:
        while time.monotonic() < t_end and proc.poll() is None:
            rows += sample(proc.pid)
            time.sleep(min(every, max(t_end - time.monotonic(), 0)))
        rows += sample(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(10)
    with open(out / "soak.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["t", "process", "rss_mb", "fds"])
        wr.writeheader()
        wr.writerows(rows)
    if rows:
        write_svg(rows, out / "soak.svg")
    return rows, code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--every", type=float, default=60, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=120, help="seconds before RSS growth is measured")
    ap.add_argument("--out", default="soak")
    a = ap.parse_args()
    rows, code = soak(a.config, a.minutes * 60, a.every, Path(a.out), a.warmup)
    if not rows:
        print("no samples: the run ended at once", file=sys.stderr)
        return 1
    for name, s in summarize(rows, a.warmup).items():
        print(f"{name:28s} RSS {s['rss_first']:8.1f} → {s['rss_last']:8.1f} MiB ({s['rss_growth_pct']:+.1f} %)  "
              f"fds {s['fds_first']} → {s['fds_last']} (max {s['fds_max']})")
    print(f"run exit code {code}; CSV {a.out}/soak.csv, plot {a.out}/soak.svg")
    return code


if __name__ == "__main__":
    sys.exit(main())
