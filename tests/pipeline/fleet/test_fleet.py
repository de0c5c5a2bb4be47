"""A fleet on a real Ray cluster on one host (a head and two worker nodes,
``ray.cluster_utils.Cluster``), driven through ``videoclf run CONFIG --ray ADDRESS``."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FAST_MODEL, SHM_TAG, make_video, read_jsonl, run_cli, shm_segments
from helpers_proc import line_count, start_cli, wait_for
from live_helpers import free_port, needs_gst, serving
from videoclf.config.load import parse_config
from videoclf.fleet.run import Fleet, _Shard
from videoclf.fleet.agent import _expand
from videoclf.fleet.outputs import CARRIED, CENTRAL, REFUSED, fleet_refusal, template
from videoclf.fleet.placement import Node, assign

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

# dead nodes are declared after 3 missed health checks 0.5 s apart (Ray's default: ~15 s)
HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
LIVE = {"watchdog_s": 2, "backoff_s": 0.2, "backoff_max_s": 1, "open_timeout_s": 2, "read_timeout_s": 2}


@pytest.fixture
def cluster():
    """Factory: a head that takes no stream and two worker nodes with ``capacity`` streams each."""
    from ray.cluster_utils import Cluster

    made = []

    def make(capacity: int) -> tuple[Any, list]:
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20,
                                                          "_system_config": HEALTH})
        workers = [c.add_node(num_cpus=1, resources={"videoclf_streams": capacity}, object_store_memory=80 * 2**20)
                   for _ in range(2)]
        c.wait_for_nodes()
        made.append(c)
        return c, workers

    yield make
    for c in made:
        c.shutdown()


def _config(tmp_path: Path, streams: list[dict[str, Any]]) -> Path:
    p = tmp_path / "fleet.yaml"
    p.write_text(yaml.safe_dump({"streams": streams, "model": FAST_MODEL, "output": {"dir": str(tmp_path / "out")},
                                 "cluster": {"workdir": str(tmp_path / "nodes")}}))  # each shard's own outputs
    return p


def _no_leftovers() -> None:
    import psutil

    def ours(p: psutil.Process) -> bool:
        """A stage process of this test session: it inherited the session's segment tag (through
        the Ray nodes, started here); other sessions on the machine run their own."""
        try:
            return (" ".join(p.info["cmdline"] or []).startswith("videoclf: ")
                    and p.environ().get("VIDEOCLF_SHM_TAG") == SHM_TAG)
        except psutil.Error:  # gone meanwhile, or not ours to read
            return False

    def gone() -> bool:
        return not any(ours(p) for p in psutil.process_iter(["cmdline"])) and not shm_segments()

    wait_for(gone, 5, "no videoclf process or segment 5 s after the end")


def test_placement_fills_the_least_loaded_node_that_fits():
    nodes = [Node("a", "1", 2), Node("b", "2", 2, {"site_a": 1.0}), Node("g", "3", 1, {}, gpus=1.0)]
    load: dict[str, int] = {}
    site = type("P", (), {"resources": {"site_a": 1}, "num_gpus": 0})()
    gpu = type("P", (), {"resources": {}, "num_gpus": 1})()
    plain = type("P", (), {"resources": {}, "num_gpus": 0})()
    got = assign([("s1", site), ("g1", gpu), ("p1", plain), ("p2", plain), ("p3", plain), ("p4", plain)], nodes, load)
    assert got["s1"] == "b" and got["g1"] == "g"  # required resources and GPUs pick the node
    assert sorted(got[n] for n in ("p1", "p2", "p3")) == ["a", "a", "b"]  # spread, least loaded first
    assert got["p4"] is None and load == {"a": 2, "b": 2, "g": 1}  # no room left: it waits


def test_a_shard_that_does_not_start_in_time_is_one_line_naming_it_and_the_limit(cluster, tmp_path):
    # regression: a shard start past its wait ended the driver in a GetTimeoutError traceback
    # given nodes that must start a shard within 1 ms (a node's agent alone takes longer to start)
    c, workers = cluster(2)
    cfg = _config(tmp_path, [{"name": "f0", "source": str(make_video(tmp_path / "f0.mp4", width=96, height=64))}])
    data = yaml.safe_load(cfg.read_text())
    data["cluster"]["start_timeout_s"] = 0.001
    cfg.write_text(yaml.safe_dump(data))
    # when the fleet runs
    proc = start_cli("run", str(cfg), "--ray", c.address)
    _, err = proc.communicate(timeout=240)
    # then it exits 1 with one error line naming the shard, its stream, its node and the limit
    assert proc.returncode == 1 and "Traceback" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("videoclf: error:")]
    assert len(errors) == 1, err[-3000:]
    m = re.fullmatch(r"videoclf: error: shard1 \(f0\) on node ([0-9a-f]{12}): did not start within 0.001 s "
                     r"\(cluster.start_timeout_s\)", errors[0])
    assert m and m.group(1) in {w.node_id[:12] for w in workers}, errors[0]
    # and the report is written, with the stream ended in error; the late shard was stopped
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["streams"]["f0"]["end"] == "error" and "did not start within" in report["error"]["message"]
    _no_leftovers()


def test_four_files_on_two_nodes_of_two_take_two_each(cluster, tmp_path):
    c, workers = cluster(2)
    files = [make_video(tmp_path / f"f{i}.mp4", width=96, height=64, frames=1500 + 20 * i) for i in range(4)]
    cfg = _config(tmp_path, [{"name": f"f{i}", "source": str(f)} for i, f in enumerate(files)])
    port = free_port()
    data = yaml.safe_load(cfg.read_text())
    data["output"]["metrics"] = f"127.0.0.1:{port}"  # each shard serves /metrics on port, port + 1, …
    cfg.write_text(yaml.safe_dump(data))
    targets = tmp_path / "out" / "prometheus_targets.json"
    seen: list = []
    proc = start_cli("run", str(cfg), "--ray", c.address)
    wait_for(lambda: targets.exists() and len(json.loads(targets.read_text())) == 2 and seen.append(
        json.loads(targets.read_text())) is None, 120, "the running shards' /metrics in the file_sd list")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    nodes = [report["streams"][f"f{i}"]["node"] for i in range(4)]
    assert sorted(nodes.count(n) for n in set(nodes)) == [2, 2]
    assert set(nodes) == {w.node_id for w in workers}
    # the shards' Prometheus endpoints were listed for file_sd, one per node, labelled with it
    listed = seen[0]
    assert {t["labels"]["node"] for t in listed} == set(nodes)
    assert sorted(t["targets"][0] for t in listed) == [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
    for i in range(4):
        assert [r["frame"] for r in read_jsonl(tmp_path / "out" / f"f{i}.jsonl")] == list(range(1500 + 20 * i))
    # and a second fleet run into the same directory appends after each log's last frame: the
    # logs are as they were (the files were complete), nothing truncated, no frame twice
    logs = {i: (tmp_path / "out" / f"f{i}.jsonl").read_bytes() for i in range(4)}
    again = start_cli("run", str(cfg), "--ray", c.address)
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-3000:]
    assert {i: (tmp_path / "out" / f"f{i}.jsonl").read_bytes() for i in range(4)} == logs
    _no_leftovers()


def test_a_killed_node_s_files_resume_on_the_other_exactly_once(cluster, tmp_path):
    c, workers = cluster(4)
    n = 2500
    files = [make_video(tmp_path / f"f{i}.mp4", width=160, height=120, frames=n) for i in range(4)]
    cfg = _config(tmp_path, [{"name": f"f{i}", "source": str(f)} for i, f in enumerate(files)])
    out = tmp_path / "out"
    proc = start_cli("run", str(cfg), "--ray", c.address)
    try:
        wait_for(lambda: all(line_count(out / f"f{i}.jsonl") >= 50 for i in range(4)), 180, "labels from every file")
        # when one worker node (raylet and workers) is SIGKILLed mid-run
        c.remove_node(workers[0], allow_graceful=False)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then the run ends normally and every file's log holds each frame once, in order
    assert proc.returncode == 0, err[-3000:]
    report = json.loads((out / "report.json").read_text())
    for i in range(4):
        assert [r["frame"] for r in read_jsonl(out / f"f{i}.jsonl")] == list(range(n)), i
    moved = [s for s in report["streams"].values() if s["reassignments"]]
    assert moved and all(s["node"] == workers[1].node_id for s in moved)
    assert all(len(s["assignments"]) == 2 and s["assignments"][1]["from_frame"] > 0 for s in moved)
    dead = [nd for nd in report["fleet"]["nodes"].values() if not nd["alive"]]
    assert len(dead) == 1
    _no_leftovers()


@needs_gst
def test_a_camera_on_a_killed_node_logs_again_within_10_s(cluster, tmp_path):
    c, workers = cluster(1)
    clip = make_video(tmp_path / "cam.mp4", 320, 180, frames=60, fps=30, gop=30)
    out = tmp_path / "out"
    with serving(clip) as start:
        cams = {n: start() for n in ("c1", "c2")}
        cfg = _config(tmp_path, [{"name": n, "source": cam.url(), "live": LIVE} for n, cam in cams.items()])
        proc = start_cli("run", str(cfg), "--ray", c.address, "--duration", "45")
        try:
            wait_for(lambda: all(line_count(out / f"{n}.jsonl") >= 30 for n in cams), 180, "labels from both cameras")
            victim = next(w for w in workers)
            t_kill = time.time()
            c.remove_node(victim, allow_graceful=False)
            c.add_node(num_cpus=1, resources={"videoclf_streams": 1}, object_store_memory=80 * 2**20)  # spare room
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-3000:]
    report = json.loads((out / "report.json").read_text())
    moved = [n for n, s in report["streams"].items() if s["reassignments"]]
    assert len(moved) == 1
    times = [r["time"] for r in read_jsonl(out / f"{moved[0]}.jsonl")]
    assert min(t for t in times if t > t_kill) - t_kill <= 10.0
    frames = [r["frame"] for r in read_jsonl(out / f"{moved[0]}.jsonl")]
    assert frames == sorted(set(frames))  # numbering went on: no frame twice, none back
    _no_leftovers()


@needs_gst
def test_a_camera_added_to_the_config_joins_without_pausing_the_others_and_a_removed_one_stops(cluster, tmp_path):
    c, _ = cluster(2)
    clip = make_video(tmp_path / "cam.mp4", 320, 180, frames=60, fps=30, gop=30)
    out = tmp_path / "out"
    with serving(clip) as start:
        cams = {n: start() for n in ("c1", "c2", "c3")}
        streams = [{"name": n, "source": cam.url(), "live": LIVE} for n, cam in cams.items()]
        cfg = _config(tmp_path, streams[:2])
        proc = start_cli("run", str(cfg), "--ray", c.address, "--duration", "40")
        try:
            wait_for(lambda: all(line_count(out / f"{n}.jsonl") >= 30 for n in ("c1", "c2")), 180, "labels")
            t_add = time.time()
            _config(tmp_path, streams)  # the fleet watches its config file
            wait_for(lambda: line_count(out / "c3.jsonl") >= 10, 90, "labels from the added camera")
            # and a camera taken out of the config stops while the others go on
            t_remove = time.time()
            _config(tmp_path, [streams[0], streams[2]])
            time.sleep(4)
            t_removed, n_removed = time.time(), line_count(out / "c2.jsonl")
            time.sleep(4)
            assert line_count(out / "c2.jsonl") == n_removed
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-3000:]
    for n in ("c1", "c2"):
        times = [r["time"] for r in read_jsonl(out / f"{n}.jsonl") if t_add - 2 <= r["time"] <= t_remove]
        assert max(b - a for a, b in zip(times, times[1:])) <= 1.0, n
    report = json.loads((out / "report.json").read_text())
    assert report["streams"]["c2"]["end"] == "removed"
    assert max(r["time"] for r in read_jsonl(out / "c1.jsonl")) > t_removed + 3  # c1 went on
    _no_leftovers()


# -- outputs and secrets ------------------------------------------------------------------
needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None or shutil.which("mosquitto_sub") is None,
                                     reason="needs Debian's mosquitto and mosquitto-clients (.ci/run installs them)")
# two classes, so every frame's top-2 holds both: a rule on either with min_score 0 opens an
# event on a stream's first frame and closes it when the stream ends
TWO_CLASSES = {**FAST_MODEL, "num_classes": 2, "top_k": 2}
ALWAYS = {"when": ["class_0", "class_1"], "min_score": 0.0, "for_frames": 1, "cooldown_s": 0}


def test_an_output_a_fleet_cannot_honour_is_refused_in_one_line(tmp_path):
    # given a config with the web view, which reads previews from one host's output.dir
    cfg = _config(tmp_path, [{"name": "f", "source": str(make_video(tmp_path / "f.mp4"))}])
    data = yaml.safe_load(cfg.read_text())
    data["output"]["web"] = ":8080"
    cfg.write_text(yaml.safe_dump(data))
    # when it is validated for a fleet, or run on one (nothing listens at that address: the
    # refusal comes before Ray is asked anything)
    checks = [run_cli("validate", str(cfg), "--ray", "auto", "--no-sources"),
              run_cli("run", str(cfg), "--ray", "127.0.0.1:9")]
    # then each exits 2 with one line naming the key, and writes nothing
    for res in checks:
        assert res.returncode == 2, res.stderr
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("videoclf: error: output.web: "), res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
    # while a local validate takes it, and a fleet validate takes the outputs it carries
    assert run_cli("validate", str(cfg), "--no-sources").returncode == 0
    del data["output"]["web"]
    data["output"].update({"video": True, "alerts": [ALWAYS], "metrics": ":9300"})
    cfg.write_text(yaml.safe_dump(data))
    res = run_cli("validate", str(cfg), "--ray", "auto", "--no-sources")
    assert res.returncode == 0, res.stderr


def test_every_output_key_is_carried_gathered_or_refused():
    from videoclf.config.schema import OutputConfig

    # the sets name only real keys and do not overlap
    assert CARRIED | CENTRAL | set(REFUSED) <= set(OutputConfig.model_fields)
    assert not (CARRIED & CENTRAL) and not ((CARRIED | CENTRAL) & set(REFUSED))
    # and a key that is in none of them (an output added later) is refused when set, not dropped
    out = parse_config({"streams": [{"name": "a", "source": "a.mp4"}], "output": {"video": True}}).output
    assert fleet_refusal(out) is None
    line = fleet_refusal(out, known=(CARRIED | CENTRAL) - {"video"})
    assert line is not None and line.startswith("output.video: not available with --ray")


def test_a_shard_config_names_the_variables_and_loads_back_the_same(monkeypatch):
    # given variables whose values are awkward: one holds '$', one is a substring of another,
    # one is a single character that occurs in other strings
    env = {"CAM_PASSWORD": "pa$$:w{rd}", "SHORT": "e", "LONGER": "passage"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    raw = {"streams": [{"name": "cam", "source": "rtsp://admin:${CAM_PASSWORD}@10.0.0.5/${LONGER}"},
                       {"name": "feed", "source": "/data/${SHORT}/clip.mp4"}],
           "output": {"alerts": [{**ALWAYS, "webhook": "https://hooks.example/${LONGER}/${SHORT}"}]}}
    cfg = parse_config(raw)
    # when the loaded config (values expanded) is written back for a shard
    text = yaml.safe_dump(template(cfg.model_dump(mode="json"), cfg.env))
    # then no value of a multi-character variable is in it, and loading it gives the same config
    assert "pa$$:w{rd}" not in text and "passage" not in text and "${CAM_PASSWORD}" in text
    assert parse_config(yaml.safe_load(text)) == cfg
    assert cfg.env == env
    # and the agent names the shard's label logs as the shard will (a name holding a value)
    names = [s_["name"] for s_ in yaml.safe_load(text)["streams"]]
    assert names[1] == "f${SHORT}${SHORT}d" and [_expand(n, env) for n in names] == ["cam", "feed"]


def test_lines_are_taken_once_when_a_stop_s_answer_overtakes_a_poll_s():
    shard = _Shard("n", {"a": 1})
    # given a poll sent at offset 0 and a stop sent at the same offset, whose answer comes first
    poll = (0, b"1\n2\n")
    stop = (0, b"1\n2\n3\n")
    # then the stop's lines are taken, the poll's add nothing, and the next poll goes on at 6
    assert Fleet._fresh(shard, "a.jsonl", *stop) == ["1", "2", "3"]
    assert Fleet._fresh(shard, "a.jsonl", *poll) == []
    assert shard.read == {"a.jsonl": 6}
    # and an answer that starts inside what was taken gives only the new lines
    assert Fleet._fresh(shard, "a.jsonl", 4, b"3\n4\n") == ["4"]
    assert shard.read == {"a.jsonl": 8}


def _files_holding(secret: bytes, roots: list[Path]) -> tuple[list[str], int]:
    """Regular files under ``roots`` that contain ``secret`` (sockets, fifos and unreadable
    files skipped), and how many files were read."""
    hits, seen = [], set()
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = os.path.join(dirpath, n)
                try:
                    if p in seen or not stat.S_ISREG(os.lstat(p).st_mode):
                        continue
                    seen.add(p)  # the roots may hold each other
                    with open(p, "rb") as f:
                        tail = b""
                        while chunk := f.read(1 << 20):
                            if secret in tail + chunk:
                                hits.append(p)
                                break
                            tail = chunk[-len(secret):]
                except OSError:  # gone meanwhile (other runs use the temp dir too) or not ours
                    continue
    return hits, len(seen)


@needs_gst
def test_a_fleet_keeps_the_camera_password_off_disk_and_gathers_alert_events_once(cluster, tmp_path):
    c, workers = cluster(1)
    password = "pw-" + secrets.token_hex(12)
    assert "CAM_PASSWORD" not in os.environ  # the Ray nodes inherit this process's environment
    clip = make_video(tmp_path / "cam.mp4", 320, 180, frames=60, fps=30, gop=30)
    out, nodes_dir = tmp_path / "out", tmp_path / "nodes"
    with serving(clip) as start:
        cam = start(user="admin", password=password)  # Basic auth: the stream works only with the password
        streams = [{"name": "cam", "source": cam.url("admin", "${CAM_PASSWORD}"), "live": LIVE},
                   {"name": "f", "source": str(make_video(tmp_path / "f.mp4", 96, 64, frames=90))}]
        cfg = _config(tmp_path, streams)
        data = yaml.safe_load(cfg.read_text())
        data["model"] = TWO_CLASSES
        data["output"].update({"alerts": [ALWAYS], "video": True})
        cfg.write_text(yaml.safe_dump(data))
        # when the fleet runs with the password only in the driver's environment
        proc = start_cli("run", str(cfg), "--ray", c.address, env={"CAM_PASSWORD": password})
        try:
            wait_for(lambda: proc.poll() is not None or (line_count(out / "cam.jsonl") >= 30
                                                         and line_count(out / "f.jsonl") == 90),
                     240, "labels from the camera and the whole file")
            proc.send_signal(signal.SIGTERM)  # stops the fleet: shards drain and close their events
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert {report["streams"][n]["node"] for n in ("cam", "f")} == {w.node_id for w in workers}
    # then each stream's event opened on its first frame and closed once, in the central log,
    # named with the node that ran it and the snapshot on that node
    events = read_jsonl(out / "events.jsonl")
    for name in ("cam", "f"):
        mine = [e for e in events if e["stream"] == name]
        assert [e["event"] for e in mine] == ["open", "close"], mine
        assert all(e["node"] == report["streams"][name]["node"] for e in mine)
        snap = Path(mine[0]["snapshot"])
        assert snap.is_relative_to(nodes_dir) and snap.read_bytes()[:2] == b"\xff\xd8"  # a JPEG, on the node
    # and the central log is each shard's own events, once each, in order
    shard_events = {}
    for path in nodes_dir.glob("*/*/shard*/out/events.jsonl"):
        shard_events[path.parents[1].name] = read_jsonl(path)
    assert sorted(shard_events) == sorted({e["shard"] for e in events})
    for sid, theirs in shard_events.items():
        ours = [{k: v for k, v in e.items() if k not in ("node", "node_address", "shard")}
                for e in events if e["shard"] == sid]
        assert ours == theirs, sid
    assert report["alerts"] == {"events": 4, "fenced": 0}
    # and the annotated video stayed on the node, in the shard's output dir
    videos = report["streams"]["cam"]["video"]["files"]
    assert videos and all(Path(v).is_relative_to(nodes_dir) and Path(v).stat().st_size > 0 for v in videos)
    # and no file the run left under the workdir, the temp dir or output.dir holds the password
    hits, read = _files_holding(password.encode(), [nodes_dir, Path(tempfile.gettempdir()), out])
    assert not hits and read > 10, hits
    # and the shard's config keeps the reference; it and its directories are private
    configs = list(nodes_dir.glob("*/*/shard*/config.yaml"))
    assert any("${CAM_PASSWORD}" in p.read_text() for p in configs)
    for p in configs:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert stat.S_IMODE((p.parent / "stderr.log").stat().st_mode) == 0o600
        for d in (p.parent, p.parent.parent, p.parent.parent.parent):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    _no_leftovers()


def _shard_environ(nodes_dir: Path) -> dict[str, str]:
    """The environment of the (one) running shard supervisor of the run under ``nodes_dir``."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "videoclf.cli.main" in cmd and any(a.startswith(str(nodes_dir)) and a.endswith("config.yaml") for a in cmd):
            return p.environ()
    raise AssertionError(f"no shard supervisor running under {nodes_dir}")


@needs_mosquitto
def test_a_fleet_publishes_events_and_state_to_mqtt_from_the_driver(cluster, tmp_path):
    from mqtt_helpers import Broker, messages

    c, workers = cluster(1)
    password = "mq-" + secrets.token_hex(12)
    broker = Broker(tmp_path, users={"videoclf": password})
    out, nodes_dir, sub_out = tmp_path / "out", tmp_path / "nodes", tmp_path / "sub.txt"
    try:
        sub = broker.subscribe(sub_out, "videoclf", password)
        video = make_video(tmp_path / "f.mp4", 96, 64, frames=90)
        cfg = _config(tmp_path, [{"name": "f", "source": str(video), "loop": True}])
        data = yaml.safe_load(cfg.read_text())
        data["model"] = TWO_CLASSES
        data["output"].update({"alerts": [ALWAYS], "mqtt": f"mqtt://videoclf:${{MQTT_PASSWORD}}@127.0.0.1:{broker.port}"})
        cfg.write_text(yaml.safe_dump(data))
        # when a fleet runs with the broker's password only in the driver's environment
        proc = start_cli("run", str(cfg), "--ray", c.address, env={"MQTT_PASSWORD": password})
        try:
            wait_for(lambda: proc.poll() is not None or line_count(out / "f.jsonl") >= 60, 180, "labels from the file")
            shard_env = _shard_environ(nodes_dir)
            time.sleep(1.5)  # a state message after the first lines
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        time.sleep(0.5)
        sub.terminate()
        sub.wait(timeout=5)
    finally:
        broker.kill()
    assert proc.returncode == 0, err[-3000:]
    report = json.loads((out / "report.json").read_text())
    got = messages(sub_out)
    # then the events on <prefix>/<stream>/events are the central events.jsonl's lines, node included
    events = (out / "events.jsonl").read_text().splitlines()
    assert [json.loads(e)["event"] for e in events] == ["open", "close"]
    assert [p for t, p in got if t == "videoclf/f/events"] == events
    assert json.loads(events[0])["node"] == report["streams"]["f"]["node"]
    # and the stream's state came from the driver: live on its node with a label, then ended
    states = [json.loads(p) for t, p in got if t == "videoclf/f/state"]
    live = [st for st in states if st["status"] == "live"]
    assert live and live[-1]["node"] == report["streams"]["f"]["node"] and live[-1]["fps"] > 0
    assert live[-1]["label"] in ("class_0", "class_1")
    assert states[-1]["status"] == "ended" and states[-1]["frames"] == report["streams"]["f"]["frames"]
    # and one availability for the run, online then offline; discovery for the stream
    avail = [p for t, p in got if t == "videoclf/availability"]
    assert avail[0] == "online" and avail[-1] == "offline"
    disc = {t: json.loads(p) for t, p in got if t.startswith("homeassistant/sensor/")}
    assert disc["homeassistant/sensor/videoclf_f_label/config"]["state_topic"] == "videoclf/f/state"
    assert report["mqtt"]["dropped"] == 0 and report["mqtt"]["published"] >= len(events) + len(states)
    # and the shards never had the broker or its password: not in their config, files or environment
    assert "MQTT_PASSWORD" not in shard_env
    assert shard_env.get("VIDEOCLF_SHM_TAG") == SHM_TAG  # what _no_leftovers tells this session's processes by
    assert all("mqtt" not in yaml.safe_load(p.read_text())["output"] for p in nodes_dir.glob("*/*/shard*/config.yaml"))
    hits, read = _files_holding(password.encode(), [nodes_dir, out])
    assert not hits and read > 5, hits
    _no_leftovers()
