"""Time on a live camera that restarts: a real RTSP server killed and started again mid-run, so
the camera's timestamps start again at 0, under the real multiprocess pipeline run by the CLI."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml

from conftest import FAST_MODEL, make_video, read_jsonl
from helpers_proc import start_cli, wait_for
from live_helpers import needs_gst, serving
from videoclf.stages.classify.backbones import imagenet_labels

pytestmark = [needs_gst, pytest.mark.slow]

FAST_LIVE = {"watchdog_s": 2, "backoff_s": 0.2, "backoff_max_s": 0.5, "open_timeout_s": 2, "read_timeout_s": 2}
COOLDOWN_S, FOR_FRAMES, DOWN_S = 5.0, 3, 3.0  # the camera is down longer than its watchdog, shorter than the cooldown


def complete_lines(path: Path) -> list[dict]:
    """The JSON lines written so far (none before the file exists; a line being written is left out)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 320x180 H.264, 30 fps, a keyframe every second: the server loops it as one endless stream
    return make_video(tmp_path_factory.mktemp("clip") / "cam.mp4", 320, 180, frames=60, fps=30, gop=30)


def test_a_camera_restart_keeps_stream_time_monotonic_and_the_cooldown_on_the_wall_clock(tmp_path, clip):
    out = tmp_path / "out"
    # a rule that holds on every frame: an event stays open while the camera streams
    rule = {"when": imagenet_labels(), "min_score": 0.0, "for_frames": FOR_FRAMES, "cooldown_s": COOLDOWN_S}
    with serving(clip) as start:
        cam = start()
        cfg = tmp_path / "live.yaml"
        cfg.write_text(yaml.safe_dump({"streams": [{"name": "cam", "source": cam.url(), "live": FAST_LIVE}],
                                       "model": FAST_MODEL, "output": {"dir": str(out), "alerts": [rule]}}))
        # given a run whose camera has streamed (and held the rule) for about 5 s
        proc = start_cli("run", str(cfg), "--duration", "60", "-q")
        try:
            labels = out / "cam.jsonl"
            first = wait_for(lambda: complete_lines(labels)[:1], 90, "the first label")[0]
            wait_for(lambda: time.time() > first["time"] + 5, 10, "5 s of labels")
            # when the server is killed, stays down 3 s and comes back on the same port (pts from 0 again)
            cam.kill()
            killed = time.time()
            time.sleep(DOWN_S)
            start(cam.port)
            # then the rule opens a new event after the restart
            wait_for(lambda: [e for e in complete_lines(out / "events.jsonl") if e["event"] == "open"
                              and e["start_time"] > killed], 20, "an event after the restart")
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    rows = read_jsonl(labels)
    events = read_jsonl(out / "events.jsonl")

    # the label log's pts never go back, and the jump across the restart is the outage's wall time
    pts, times = [r["pts"] for r in rows], [r["time"] for r in rows]
    assert all(b >= a for a, b in zip(pts, pts[1:])), "stream time went backwards"
    cut = max(range(1, len(rows)), key=lambda k: times[k] - times[k - 1])  # first frame after the outage
    assert times[cut] - times[cut - 1] >= DOWN_S
    assert pts[cut] - pts[cut - 1] == pytest.approx(times[cut] - times[cut - 1], abs=0.5)

    # the outage closed the open event at its last frame; after the restart the rule fired again
    # on the first frame past both the cooldown (wall clock) and for_frames frames of the condition
    assert [e["event"] for e in events][:3] == ["open", "close", "open"], events
    closed, again = events[1], events[2]
    assert closed["end_time"] == times[cut - 1] and closed["end_pts"] == pts[cut - 1]
    assert again["start_time"] == times[cut] and again["start_pts"] == pts[cut]
    opened_at = times[cut + again["frames"] - 1]  # the frame that opened it
    due = max(closed["end_time"] + COOLDOWN_S, times[cut + FOR_FRAMES - 1])
    assert opened_at >= due - 1e-6
    assert opened_at == min(t for t in times[cut:] if t >= due - 1e-6), "it fired later than it was due"
