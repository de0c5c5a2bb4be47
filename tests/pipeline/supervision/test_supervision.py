"""Supervision: a stage process killed during a file run stops the run cleanly (exit 1, one
line naming the stage), keeps every label written so far, and leaves no process or segment."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from conftest import FAST_MODEL, make_video, read_jsonl, shm_segments
from helpers_proc import assert_all_gone, kill_stage, line_count, stages_of, start_cli, wait_for


@pytest.fixture
def looping_config(tmp_path: Path, write_config):
    """A file stream that loops forever: the run is still busy whenever we strike."""
    video = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=60)

    def make(**top):
        return write_config([{"name": "cam1", "source": str(video), "loop": True}], model=FAST_MODEL, **top)

    return make


def assert_label_log_prefix(path: Path) -> int:
    """Every line is whole and frames run 0..n-1 without a gap: complete up to the kill."""
    rows = read_jsonl(path)
    assert [r["frame"] for r in rows] == list(range(len(rows)))
    return len(rows)


@pytest.mark.parametrize("victim", ["decode[cam1]", "classify[", "sink["])
def test_sigkill_of_any_stage_ends_a_file_run_with_exit_1(looping_config, tmp_path, victim):
    # given a file run that is classifying
    cfg = looping_config()
    log = tmp_path / "out" / "cam1.jsonl"
    proc = start_cli("run", str(cfg), "-q", "--duration", "120")
    try:
        wait_for(lambda: line_count(log) >= 20, 90, "the first labels")
        stages = list(stages_of(proc.pid).values())
        assert len(stages) == 3
        # when one stage is killed with SIGKILL
        kill_stage(proc.pid, victim)
        t_kill = time.monotonic()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then the run stops soon, exits 1 and says which stage died and how
    assert proc.returncode == 1, err
    assert time.monotonic() - t_kill < 15
    lines = [ln for ln in err.splitlines() if ln.startswith("videoclf: error:")]
    assert len(lines) == 1, err
    assert victim.rstrip("[") in lines[0] and "SIGKILL" in lines[0]
    # and no stage outlives the run, no segment is left, the label log is whole up to the kill
    assert_all_gone(stages)
    assert not shm_segments()
    assert assert_label_log_prefix(log) >= 20
    report = (tmp_path / "out" / "report.json").read_text()
    assert "SIGKILL" in report


def test_sigterm_stops_cleanly_and_flushes_the_label_log(looping_config, tmp_path):
    # given a busy file run
    cfg = looping_config()
    log = tmp_path / "out" / "cam1.jsonl"
    proc = start_cli("run", str(cfg), "-q", "--duration", "120")
    try:
        wait_for(lambda: line_count(log) >= 20, 90, "the first labels")
        stages = list(stages_of(proc.pid).values())
        # when the supervisor gets SIGTERM (docker stop, systemd)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then it exits 0 after draining, with every classified frame written and the report saying so
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    n = assert_label_log_prefix(log)
    import json

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["interrupted"] is True
    assert report["streams"]["cam1"]["frames"] == n
    assert report["streams"]["cam1"]["end"] == "stopped"
    assert_all_gone(stages)
    assert not shm_segments()
