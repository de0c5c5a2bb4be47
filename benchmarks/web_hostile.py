"""What hostile HTTP clients cost the pipeline: sustained FPS of a run whose web view is
hammered with malformed requests (bad and huge lengths, oversize uploads, bad JSON, path
traversal in stream names, unknown methods, garbage request lines, requests without the
token) against the same run left alone, alternated ABBA on the same looping file.

Usage (run by hand):
    python benchmarks/web_hostile.py [--repeat 3] [--frames 3000] [--rate 20]

Prints the CPU, each run's sustained FPS, the medians and their ratio (target: no loss
beyond the machine's noise, 2 %), and how the requests were answered (every one a 4xx, or a
closed connection where the request cannot even be parsed as HTTP)."""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _req(line: str, headers: str = "", body: bytes = b"", auth: bool = True) -> bytes:
    bearer = f"Authorization: Bearer {TOKEN}\r\n" if auth else ""
    return f"{line}\r\nHost: 127.0.0.1\r\n{bearer}{headers}Connection: close\r\n\r\n".encode() + body


HOSTILE = [
    _req("POST /api/classify HTTP/1.1", "Content-Length: lots\r\n", b"x"),
    _req("POST /api/classify HTTP/1.1", "Content-Length: -5\r\n"),
    _req("POST /api/classify HTTP/1.1", "Content-Length: 99999999999999999999\r\n"),
    _req("POST /api/classify HTTP/1.1", "Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"),
    _req("POST /api/classify HTTP/1.1", "Content-Length: 20000000\r\n", b"\0" * 1024),
    _req("POST /api/classify HTTP/1.1", "Content-Length: 5\r\n", b"hello"),  # not an image
    _req("POST /api/streams HTTP/1.1", "Content-Type: application/json\r\nContent-Length: 5\r\n", b"{nope"),
    _req("POST /api/streams HTTP/1.1", "Content-Type: application/json\r\nContent-Length: 2\r\n", b"[]"),
    _req("POST /api/streams HTTP/1.1", "Content-Length: 41\r\n", b'{"name": "../../etc", "source": "x.mp4"}\n'),
    _req("POST /api/streams HTTP/1.1", "Content-Length: 31\r\n", b'{"name": "v", "colour": "red"}\n'),
    _req("DELETE /api/streams/..%2f..%2fetc HTTP/1.1"),
    _req("DELETE /api/streams/%00 HTTP/1.1"),
    _req("DELETE /api/streams/nosuch HTTP/1.1"),
    _req("GET /live/..%2f..%2freport.json.jpg HTTP/1.1"),
    _req("GET /live/%2e%2e%2freport.jpg HTTP/1.1"),
    _req("PATCH /api/streams HTTP/1.1"),
    _req("PROPFIND / HTTP/1.1"),
    _req("GET /api/streams HTTP/1.1", auth=False),
    _req("GET / HTTP/1.1", "X-Broken-Header-Without-Colon\r\n"),
    b"\x16\x03\x01garbage that is no request line\r\n\r\n",
]


def _send(port: int, raw: bytes) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            head = s.recv(64)
    except OSError:
        return "closed"
    parts = head.split()
    return parts[1].decode() if len(parts) > 1 and head.startswith(b"HTTP/") else "closed"


def hammer(port: int, rate: float, stop: threading.Event, answers: Counter) -> None:
    i = 0
    while not stop.is_set():
        answers[_send(port, HOSTILE[i % len(HOSTILE)])] += 1
        i += 1
        stop.wait(1.0 / rate)


def one_run(tmp: Path, frames: int, rate: float, tag: str) -> tuple[float, Counter]:
    import yaml

    port, out = free_port(), tmp / tag
    cfg = tmp / f"{tag}.yaml"
    cfg.write_text(yaml.safe_dump({
        "streams": [{"name": "v", "source": str(ROOT / "samples" / "bigbuckbunny_360p.mp4"), "loop": True}],
        "max_frames": frames, "model": {"backbone": "efficientnet_lite0", "weights": "imagenet"},
        "output": {"dir": str(out), "web": {"listen": f"127.0.0.1:{port}", "token": "${BENCH_TOKEN}"}}}))
    env = {**os.environ, "VIDEOCLF_CACHE": str(tmp / "cache"), "BENCH_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q"], cwd=str(ROOT), env=env,
                            stderr=subprocess.PIPE, text=True)
    answers: Counter = Counter()
    stop = threading.Event()
    if rate > 0:
        while _send(port, _req("GET /healthz HTTP/1.1")) != "200" and proc.poll() is None:
            time.sleep(0.05)
        threading.Thread(target=hammer, args=(port, rate, stop, answers), daemon=True).start()
    _, err = proc.communicate()
    stop.set()
    if proc.returncode != 0 or "Traceback" in err:
        raise SystemExit(f"{tag}: exit {proc.returncode}\n{err[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return report["streams"]["v"]["sustained_fps"], answers


def main() -> int:
    from handwritten import cpu_info, describe_cpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=20.0, help="hostile requests a second")
    args = ap.parse_args()
    print(describe_cpu(cpu_info()))
    calm, hostile, answers = [], [], Counter()
    with tempfile.TemporaryDirectory(prefix="videoclf_web_") as tmp:
        one_run(Path(tmp), 200, 0, "warm")  # export and batch measurement, untimed
        for i in range(args.repeat):
            for side in (("calm", "hostile") if i % 2 == 0 else ("hostile", "calm")):
                fps, got = one_run(Path(tmp), args.frames, args.rate if side == "hostile" else 0, f"{side}{i}")
                (calm if side == "calm" else hostile).append(fps)
                answers.update(got)
            print(f"run {i + 1}: left alone {calm[-1]:.1f} FPS, {args.rate:.0f} hostile requests/s {hostile[-1]:.1f} FPS")
    ratio = statistics.median(hostile) / statistics.median(calm)
    print(f"median FPS: left alone {statistics.median(calm):.1f}, hammered {statistics.median(hostile):.1f}; "
          f"ratio {ratio:.3f} (target >= 0.98)")
    print("answers: " + ", ".join(f"{k} x{v}" for k, v in sorted(answers.items())))
    bad = {k: v for k, v in answers.items() if k != "closed" and not k.startswith("4")}
    print("every request refused with a 4xx or a closed connection" if not bad else f"NOT refused: {bad}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
