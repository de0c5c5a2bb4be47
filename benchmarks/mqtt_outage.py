"""What a dead MQTT broker costs the pipeline: FPS with the broker up for the whole run
against FPS with the broker killed 1 s in, alternated, on the same looping file.

Usage (run by hand; needs Debian's mosquitto):
    python benchmarks/mqtt_outage.py [--repeat 3] [--frames 3000]

Prints the CPU, each run's sustained FPS, the medians, their ratio (target: the outage costs
at most 2 %) and the messages the runs dropped while the broker was away. The pairs run in
ABBA order, so a drift of the machine's speed favours neither side.
"""
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(tmp: Path, frames: int, kill_after: float | None, tag: str) -> tuple[float, dict]:
    port = free_port()
    conf = tmp / f"mosquitto-{tag}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\npersistence false\nallow_anonymous true\nuser root\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    out = tmp / tag
    cfg = tmp / f"{tag}.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({
        "streams": [{"name": "bbb", "source": str(ROOT / "samples" / "bigbuckbunny_360p.mp4"), "loop": True}],
        "max_frames": frames, "model": {"backbone": "efficientnet_lite0", "weights": "imagenet"},
        "output": {"dir": str(out), "mqtt": f"mqtt://127.0.0.1:{port}",
                   "alerts": [{"when": ["Mexican hairless"], "min_score": 0.1, "cooldown_s": 0}]}}))
    if kill_after is not None:
        threading.Timer(kill_after, broker.kill).start()
    subprocess.run([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q"], cwd=str(ROOT), check=True,
                   env={**os.environ, "VIDEOCLF_CACHE": str(tmp / "cache")})
    broker.kill()
    broker.wait()
    report = json.loads((out / "report.json").read_text())
    return report["streams"]["bbb"]["sustained_fps"], report.get("mqtt") or {}


def main() -> int:
    from handwritten import cpu_info, describe_cpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=3000)
    args = ap.parse_args()
    print(describe_cpu(cpu_info()))
    up, down = [], []
    with tempfile.TemporaryDirectory(prefix="videoclf_mqtt_") as tmp:
        one_run(Path(tmp), 200, None, "warm")  # export and batch measurement, untimed
        for i in range(args.repeat):
            # ABBA order: a drift of the machine's speed during the runs favours neither side
            for side in (("up", "down") if i % 2 == 0 else ("down", "up")):
                fps, got = one_run(Path(tmp), args.frames, None if side == "up" else 1.0, f"{side}{i}")
                (up if side == "up" else down).append(fps)
                if side == "down":
                    mqtt = got
            print(f"run {i + 1}: broker up {up[-1]:.1f} FPS, broker killed 1 s in {down[-1]:.1f} FPS "
                  f"(state dropped {mqtt.get('state', {}).get('dropped')}, events dropped "
                  f"{mqtt.get('events', {}).get('dropped')}, published {mqtt.get('events', {}).get('published')})")
    ratio = statistics.median(down) / statistics.median(up)
    print(f"median: up {statistics.median(up):.1f} FPS, broker dead {statistics.median(down):.1f} FPS: "
          f"{ratio:.3f}x ({'met' if ratio >= 0.98 else 'missed'}: a dead broker costs at most 2 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
