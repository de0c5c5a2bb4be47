"""Fault-injection soak, run by hand (not a test): N live cameras (GStreamer RTSP on
127.0.0.1) for M minutes while K random SIGKILLs hit random stage processes.

It checks, and prints:
- the run survives (exit 0) and every camera's label log goes on after every kill;
- per camera, the longest gap between two logged frames, and the longest gap of a camera
  whose own decoder was not the one killed (what one camera's crash costs the others);
- how many kills each domain took and how many restarts the report counts;
- /dev/shm holds only this run's segments throughout (sampled every second) and none after;
- no ``videoclf:`` process outlives the run.

    .venv/bin/python benchmarks/fault_soak.py [--cameras 3] [--minutes 10] [--kills 50]
    # the single-kill figures (gaps around one kill of a decoder, then of the classifier):
    .venv/bin/python benchmarks/fault_soak.py --minutes 1 --kills 0 --single
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]

from handwritten import cpu_info, describe_cpu  # noqa: E402
from naive_vs_pipeline import RESULTS, make_clip  # noqa: E402
from videoclf.devtools.testing import Camera, stage_processes as stages  # noqa: E402

LIVE = {"watchdog_s": 2, "backoff_s": 0.2, "backoff_max_s": 1, "open_timeout_s": 2, "read_timeout_s": 2}


def segments() -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith("videoclf_")]


def label_times(out: Path, name: str) -> list[float]:
    path = out / f"{name}.jsonl"
    if not path.exists():
        return []
    times = []
    for line in path.read_text().splitlines():
        try:
            times.append(json.loads(line)["time"])
        except (ValueError, KeyError):
            pass
    return times


def largest_gap(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end]
    return max((b - a for a, b in zip(inside, inside[1:])), default=float("nan"))


def first_after(times: list[float], t: float) -> float:
    return min((x for x in times if x > t), default=float("inf")) - t


def start_run(urls: dict[str, str], out: Path, seconds: float, model: dict) -> subprocess.Popen:
    cfg = out.parent / "soak.yaml"
    cfg.write_text(yaml.safe_dump({"streams": [{"name": n, "source": u, "live": LIVE} for n, u in urls.items()],
                                   "model": model, "output": {"dir": str(out)}}))
    return subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q", "--duration", str(seconds)],
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_started(proc: subprocess.Popen, out: Path, names: list[str], timeout: float = 180) -> float:
    t0 = time.time()
    while not all(len(label_times(out, n)) >= 10 for n in names):
        if proc.poll() is not None or time.time() - t0 > timeout:
            raise SystemExit(f"the run did not start: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    return time.time() - t0


def single(proc: subprocess.Popen, out: Path, names: list[str]) -> None:
    """One kill of the first camera's decoder, then one of the classifier, 15 s apart."""
    for victim in (f"decode[{names[0]}]", "classify["):
        time.sleep(5)
        before = stages(proc.pid)
        target = next(p for t, p in before.items() if t.startswith(victim))
        t_kill = time.time()
        target.send_signal(signal.SIGKILL)
        time.sleep(10)
        after = stages(proc.pid)
        kept = sorted(t for t, p in before.items() if t in after and after[t].pid == p.pid)
        print(f"SIGKILL {victim}: processes kept: {', '.join(kept)}")
        for n in names:
            times = label_times(out, n)
            print(f"  {n}: first label after the kill {first_after(times, t_kill):.2f} s, "
                  f"longest gap around it {largest_gap(times, t_kill - 3, t_kill + 10):.2f} s")


def soak(proc: subprocess.Popen, seconds: float, kills: int, seed: int) -> tuple[list, list]:
    """SIGKILL random stages at random times; sample /dev/shm every second."""
    rng = random.Random(seed)
    t0 = time.time()
    when = sorted(rng.uniform(15, seconds - 15) for _ in range(kills))
    done, foreign = [], []
    while proc.poll() is None:
        now = time.time() - t0
        mine = [s for s in segments() if not s.startswith(f"videoclf_{proc.pid}_")]
        if mine:
            foreign.append((round(now, 1), mine))
        if when and now >= when[0]:
            when.pop(0)
            live = stages(proc.pid)
            if live:
                title = rng.choice(sorted(live))
                try:
                    live[title].send_signal(signal.SIGKILL)
                    done.append((time.time(), title))
                except psutil.Error:
                    pass
        time.sleep(0.2 if when and when[0] - now < 1 else 1.0)
    return done, foreign


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--single", action="store_true", help="one decoder kill and one classifier kill, with gaps")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", default="640x360")
    args = ap.parse_args()
    print(describe_cpu(cpu_info()))
    width, height = (int(v) for v in args.size.split("x"))
    clip = make_clip(RESULTS / f"clip_{width}x{height}_30fps.mp4", seconds=10, size=(width, height))
    model = {"backbone": args.backbone, "weights": "imagenet" if args.backbone == "efficientnet_lite0" else "none"}
    names = [f"c{i + 1}" for i in range(args.cameras)]
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cams = [Camera(clip).start() for _ in names]
        try:
            proc = start_run({n: c.url() for n, c in zip(names, cams)}, out, seconds, model)
            first = wait_started(proc, out, names)
            print(f"first labels from every camera after {first:.1f} s")
            if args.single:
                single(proc, out, names)
            kills, foreign = soak(proc, seconds - first, args.kills, args.seed)
            _, err = proc.communicate(timeout=120)
        finally:
            for c in cams:
                c.kill()
        time.sleep(5)
        report = json.loads((out / "report.json").read_text())
        left = segments()
        orphans = [p.pid for p in psutil.process_iter(["cmdline"])
                   if " ".join(p.info["cmdline"] or []).startswith("videoclf: ")]
        by_domain: dict[str, int] = {}
        for _, title in kills:
            by_domain[title] = by_domain.get(title, 0) + 1
        print(f"exit code {proc.returncode}; {len(kills)} SIGKILLs: "
              + ", ".join(f"{t} {n}" for t, n in sorted(by_domain.items())))
        print("restarts in report.json: " + ", ".join(f"{t} {n}" for t, n in sorted(report["restarts"].items())))
        for n in names:
            times = label_times(out, n)
            own = [t for t, title in kills if title == f"decode[{n}]"]
            others = [t for t, title in kills if title != f"decode[{n}]" and not title.startswith(("classify", "sink"))]
            worst_other = max((largest_gap(times, t - 2, t + 10) for t in others), default=float("nan"))
            after_last = max(times) - kills[-1][0] if kills and times else float("nan")
            print(f"{n}: {len(times)} labels, longest gap {largest_gap(times, 0, 1e12):.2f} s, "
                  f"longest gap around another camera's decoder kill {worst_other:.2f} s, "
                  f"own decoder killed {len(own)}x, logging {after_last:.0f} s after the last kill")
        names = sorted({n for _, seen in foreign for n in seen})
        print(f"/dev/shm: segments of other runs seen in {len(foreign)} samples{': ' + ', '.join(names[:5]) if names else ''}"
              f"; left after the run: {left or 'none'}")
        print(f"videoclf processes left after the run: {orphans or 'none'}")
        if proc.returncode != 0:
            print(err[-3000:])
        return 0 if proc.returncode == 0 and not left and not orphans else 1


if __name__ == "__main__":
    raise SystemExit(main())
