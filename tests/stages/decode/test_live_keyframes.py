"""A live camera decoded keyframes only: a real GStreamer RTSP server (a 15 FPS clip with a
keyframe each second) that goes away and comes back, the real pipeline through the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_video, read_jsonl
from helpers_proc import line_count, wait_for
from live_helpers import needs_gst, serving

pytestmark = [needs_gst, pytest.mark.slow]

FAST = {"watchdog_s": 3, "backoff_s": 0.2, "backoff_max_s": 1, "open_timeout_s": 2, "read_timeout_s": 2}
FAST_MODEL = {"backbone": "efficientnet_lite0", "weights": "none", "input_size": 64, "max_batch": 4,
              "device": "cpu", "threads": 1}


def test_a_camera_decoded_keyframes_only_gives_a_frame_a_second_on_the_gop_grid(tmp_path):
    # given a 15 FPS camera with a keyframe every 15 frames (one a second)
    gop15 = {"g": "15", "keyint_min": "15", "sc_threshold": "0", "bf": "0"}  # no scene-cut keyframes
    clip = make_video(tmp_path / "cam.mp4", 320, 180, frames=60, fps=15, options=gop15)
    log = tmp_path / "out" / "cam.jsonl"
    with serving(clip) as start:
        cam = start()
        data = {"streams": [{"name": "cam", "source": cam.url(), "live": FAST, "classify": {"keyframes": True},
                             "decode": {"fast": True}}],
                "model": FAST_MODEL, "output": {"dir": str(tmp_path / "out")}}
        cfg = tmp_path / "live.yaml"
        cfg.write_text(yaml.safe_dump(data))
        # when the pipeline runs on it, and the camera goes away for a second and comes back
        proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "--duration", "14", "-q"],
                                cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: line_count(log) >= 3, 60, f"3 frames in {log}")
        cam.kill()
        time.sleep(1)
        restarted = time.time()
        start(cam.port)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    rows = read_jsonl(log)
    before = [r["frame"] for r in rows if r["time"] < restarted]
    after = [r["frame"] for r in rows if r["time"] > restarted]
    s = json.loads((tmp_path / "out" / "report.json").read_text())["streams"]["cam"]
    # then about one frame a second is classified, each a keyframe: numbers 15 apart, on each connection
    assert len(before) >= 3 and len(after) >= 3, (before, after)
    for frames in (before, after):
        assert all(b - a == 15 for a, b in zip(frames, frames[1:])), frames
    assert s["reconnects"] == 1 and after[0] > before[-1], s
    # and the 14 frames between two keyframes were never decoded, the camera's rate still counted
    kept = len(rows)
    assert s["skipped"]["keyframes"] >= 14 * (kept - 2) and s["skipped"]["rate"] == 0, s
    assert s["decoded"] == kept and 12 <= s["input_fps"] <= 18, s
    assert s["input"]["fast_decode"] is True
