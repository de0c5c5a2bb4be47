"""Live cameras end to end: a real GStreamer RTSP server on 127.0.0.1 serving a real clip in a
loop, the real multiprocess pipeline run through the CLI, real EfficientNet-Lite0 weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, make_video, read_jsonl
from helpers_proc import line_count, wait_for
from live_helpers import free_port, needs_gst, serving

pytestmark = [needs_gst, pytest.mark.slow]

PASSWORD = "hunter2-very-secret"
# short timeouts keep the suite fast: watchdog 2 s, back-off capped at 1 s
FAST = {"watchdog_s": 2, "backoff_s": 0.2, "backoff_max_s": 1, "open_timeout_s": 2, "read_timeout_s": 2}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 640x360 H.264, 30 fps, a keyframe every second, no B-frames: what a camera sends
    return make_video(tmp_path_factory.mktemp("clip") / "cam.mp4", 640, 360, frames=60, fps=30, gop=30)


@pytest.fixture
def cameras(clip: Path):
    with serving(clip) as start:
        yield start


def live_config(tmp_path: Path, urls: dict[str, str], **live: Any) -> Path:
    data = {"streams": [{"name": n, "source": u, "live": {**FAST, **live}} for n, u in urls.items()],
            "model": {"backbone": "efficientnet_lite0", "weights": "imagenet"},
            "output": {"dir": str(tmp_path / "out")}}
    p = tmp_path / "live.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def start_run(cfg: Path, duration: float) -> subprocess.Popen[str]:
    env = {**os.environ, "CAM_PASSWORD": PASSWORD}
    return subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "--duration", str(duration),
                             "--json-logs"], cwd=str(ROOT), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], tmp_path: Path) -> tuple[dict[str, Any], str]:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    return report, out + err


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def all_output(tmp_path: Path, text: str) -> str:
    files = "".join(p.read_text() for p in (tmp_path / "out").rglob("*") if p.is_file())
    return text + files


def test_live_run_reads_frames_at_the_camera_rate_and_hides_the_password(tmp_path, cameras):
    # given a 30 FPS camera behind a password taken from the environment
    cam = cameras()
    cfg = live_config(tmp_path, {"cam1": cam.url("admin", "${CAM_PASSWORD}")})
    # when the pipeline runs for a few seconds
    report, text = finish(start_run(cfg, 10), tmp_path)
    # then frames arrive at the camera's rate and are classified with real labels
    s = report["streams"]["cam1"]
    assert 25 <= s["input_fps"] <= 36, s
    assert s["frames"] > 10 and s["reconnects"] == 0 and s["connected"] is True
    assert s["decoded"] == s["frames"] + s["dropped"] or s["decoded"] - s["frames"] - s["dropped"] <= 20
    rows = read_jsonl(tmp_path / "out" / "cam1.jsonl")
    assert len(rows) == s["frames"] and rows[0]["top"][0]["label"]
    # and the password is in no log line, label log or report
    everything = all_output(tmp_path, text)
    assert PASSWORD not in everything
    assert "admin:***@127.0.0.1" in everything


def test_server_killed_and_restarted_reconnects_and_logs_frames_again(tmp_path, cameras):
    # given a run on a healthy camera
    cam = cameras()
    cfg = live_config(tmp_path, {"cam1": cam.url()})
    proc = start_run(cfg, 40)
    log_path = tmp_path / "out" / "cam1.jsonl"
    wait_for(lambda: line_count(log_path) >= 5, 90, f"5 frames in {log_path}")  # the model loads first
    # when the server is killed, stays down 2 s, and comes back on the same port
    cam.kill()
    time.sleep(2)
    restarted = time.time()
    cameras(cam.port)
    # then frames are logged again within a few seconds
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(r["time"] > restarted for r in read_jsonl(log_path)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    report, text = finish(proc, tmp_path)
    after = [r["time"] for r in read_jsonl(log_path) if r["time"] > restarted]
    assert after and after[0] - restarted < 6, "no frame within 6 s of the restart"
    s = report["streams"]["cam1"]
    assert s["reconnects"] == 1 and s["disconnects"] == 1
    assert s["downtime_s"] >= 2.0
    assert any("reconnected after" in r["msg"] for r in log_lines(text))


def test_frozen_server_trips_the_watchdog_and_recovers_after_sigcont(tmp_path, cameras):
    # given a camera whose reads would only time out after 20 s, watched by a 2 s watchdog
    cam = cameras()
    cfg = live_config(tmp_path, {"cam1": cam.url()}, read_timeout_s=20, watchdog_s=2)
    proc = start_run(cfg, 40)
    log_path = tmp_path / "out" / "cam1.jsonl"
    wait_for(lambda: line_count(log_path) >= 5, 90, f"5 frames in {log_path}")  # the model loads first
    # when the server is frozen (SIGSTOP) for 5 s and then thawed
    frozen = time.time()
    cam.signal(signal.SIGSTOP)
    time.sleep(5)
    cam.signal(signal.SIGCONT)
    thawed = time.time()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(r["time"] > thawed for r in read_jsonl(log_path)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    report, text = finish(proc, tmp_path)
    # then the watchdog fired within its timeout (plus a second of slack for the loaded machine)
    fired = [r["t"] for r in log_lines(text) if "watchdog" in r["msg"]]
    assert fired, text[-2000:]
    assert fired[0] - frozen <= 2 + 1.5
    # and the stream came back after SIGCONT, counted as one reconnect
    assert any(r["time"] > thawed for r in read_jsonl(log_path))
    assert report["streams"]["cam1"]["reconnects"] >= 1


def test_three_cameras_and_an_unreachable_one_run_together(tmp_path, cameras):
    # given three healthy cameras and one address where nothing listens
    urls = {f"cam{i}": cameras().url() for i in range(3)}
    urls["dead"] = f"rtsp://user:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    cfg = live_config(tmp_path, urls)
    # when the pipeline runs
    report, text = finish(start_run(cfg, 12), tmp_path)
    # then every healthy camera streams at its rate and is classified
    for name in ("cam0", "cam1", "cam2"):
        s = report["streams"][name]
        assert s["frames"] > 5 and s["input_fps"] >= 20, (name, s)
    # and the dead one keeps retrying without stopping the others, its downtime counted
    dead = report["streams"]["dead"]
    assert dead["frames"] == 0 and dead["connected"] is False and dead["downtime_s"] > 5
    assert any("cannot connect" in r["msg"] and "dead" in r["msg"] for r in log_lines(text))
    assert PASSWORD not in all_output(tmp_path, text)


def test_slow_consumer_drops_frames_and_keeps_latency_bounded(tmp_path, cameras):
    # given a consumer much slower than the camera on any CPU: ResNet-50 at 512 px in fp32 eager
    # torch on one thread, batches of one (a fast backend kept up with the old setting)
    cam = cameras()
    cfg = live_config(tmp_path, {"cam1": cam.url()})
    data = yaml.safe_load(cfg.read_text())
    data["model"].update({"backbone": "resnet50", "weights": "none", "backend": "torch", "precision": "fp32",
                          "threads": 1, "input_size": 512, "max_batch": 1})
    data["streams"][0]["ring_slots"] = 2
    cfg.write_text(yaml.safe_dump(data))
    # when it runs
    report, _ = finish(start_run(cfg, 10), tmp_path)
    s = report["streams"]["cam1"]
    # then the decoder never blocked (input at the camera rate), the excess is counted as dropped
    assert s["input_fps"] >= 25 and s["dropped"] > 0
    assert s["sustained_fps"] < s["input_fps"]
    # and the classifier released frames it had no time for, each drop counted in one place
    assert s["dropped_by"]["stale"] > 0, s["dropped_by"]
    assert sum(s["dropped_by"].values()) == s["dropped"]
    # and latency stays bounded by the frames that can be in flight, not by the run's length
    in_flight = 4 + 1 + 2  # the stream's slots (two batches of one + two) + one being classified + slack
    assert s["latency_ms"]["p99"] <= in_flight * s["infer_ms"]["p99"] + 1000, s
