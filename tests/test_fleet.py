"""A fleet on a real Ray cluster on one host (a head and two worker nodes,
``ray.cluster_utils.Cluster``), driven through ``videoclf run CONFIG --ray ADDRESS``."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FAST_MODEL, make_video, read_jsonl, shm_segments
from helpers_proc import line_count, start_cli, wait_for
from live_helpers import free_port, needs_gst, serving
from pipeline.placement import Node, assign

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

    def gone() -> bool:
        procs = [p for p in psutil.process_iter(["cmdline"]) if " ".join(p.info["cmdline"] or []).startswith("videoclf: ")]
        return not procs and not shm_segments()

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
