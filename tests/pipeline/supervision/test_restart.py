"""Restart from the specs with a rate limit (the live-run behaviour, enabled here for a looping
file with supervision.restart so it does not depend on a camera)."""
from __future__ import annotations

import json
import pickle
import signal
import time
from types import SimpleNamespace

import pytest

from conftest import FAST_MODEL, make_video, read_jsonl, shm_segments
from helpers_proc import assert_all_gone, kill_stage, line_count, stages_of, start_cli, wait_for
from videoclf.config.load import parse_config
from videoclf.core.errors import ConfigError, StageError
from videoclf.supervision.restart import RestartPolicy
from videoclf.stages.outputs.labellog import last_logged_frame, logged_after, logged_frames


@pytest.fixture
def restart_config(tmp_path, write_config):
    video = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=60)

    def make(per_min: int):
        return write_config([{"name": "cam1", "source": str(video), "loop": True}], model=FAST_MODEL,
                            supervision={"restart": True, "max_restarts_per_min": per_min})

    return make


def _replaced(pid: int, victim: str, before: dict, log, seen: list) -> None:
    """Wait until ``victim``'s stage runs again under a new pid while every other stage kept
    its own, then for 10 labels more."""
    def ok() -> bool:
        now = stages_of(pid)
        if len(now) != 3:
            return False
        for title, p in now.items():
            if title.startswith(victim) == (before.get(title) is not None and before[title].pid == p.pid):
                return False
        return True

    wait_for(ok, 90, f"{victim} restarted alone")
    seen += stages_of(pid).values()
    n = line_count(log)
    wait_for(lambda: line_count(log) >= n + 10, 90, "labels after the restart")


def test_each_killed_stage_is_restarted_alone_and_counted(restart_config, tmp_path):
    # given a supervised run allowed 5 restarts a minute, classifying
    log = tmp_path / "out" / "cam1.jsonl"
    started = time.monotonic()
    proc = start_cli("run", str(restart_config(5)), "-q", "--duration", "240")
    seen = []
    try:
        wait_for(lambda: len(stages_of(proc.pid)) == 3 and line_count(log) >= 10, 90, "the first labels")
        for victim in ("decode[cam1]", "classify[", "sink["):
            # when each stage kind in turn is SIGKILLed
            before = stages_of(proc.pid)
            seen += before.values()
            kill_stage(proc.pid, victim)
            # then only its own domain is rebuilt: the other two keep their processes
            _replaced(proc.pid, victim, before, log, seen)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        wall = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err.count("restarting ") == 3, err
    # (the report's time covers the whole run, not only the last generation's)
    assert 0.8 * wall <= json.loads((tmp_path / "out" / "report.json").read_text())["elapsed_s"] <= wall
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["restarts"] == {"decode[cam1]": 1, "classify[cpu]": 1, "sink[cam1]": 1}
    # and the label log holds whole lines from every generation, all counted in the report
    rows = read_jsonl(log)
    # (regression: a SIGKILLed sink's last stats are up to 0.5 s old and the lines it wrote after
    # them went uncounted; the log's tail is counted now)
    assert report["streams"]["cam1"]["frames"] == len(rows)
    # and every frame is logged exactly once, in order, across the three restarts: what a dead
    # stage held is sent again and what the log already has is dropped
    assert [r["frame"] for r in rows] == list(range(len(rows)))
    assert_all_gone(seen)
    assert not shm_segments()


def test_past_the_restart_limit_the_run_fails_naming_the_stage(restart_config, tmp_path):
    # given a supervised run allowed one restart a minute
    log = tmp_path / "out" / "cam1.jsonl"
    proc = start_cli("run", str(restart_config(1)), "-q", "--duration", "240")
    seen = []
    try:
        wait_for(lambda: len(stages_of(proc.pid)) == 3 and line_count(log) >= 10, 90, "the first labels")
        before = stages_of(proc.pid)
        seen += before.values()
        # when the classifier is killed twice
        kill_stage(proc.pid, "classify[")
        _replaced(proc.pid, "classify[", before, log, seen)
        kill_stage(proc.pid, "classify[")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then the second death fails the run like a file run: exit 1, one line, the limit named
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("videoclf: error:")]
    assert len(lines) == 1 and "classify[cpu] killed by signal SIGKILL" in lines[0]
    assert "max_restarts_per_min=1" in lines[0]
    assert_all_gone(seen)
    assert not shm_segments()


def test_rate_limit_counts_a_sliding_minute():
    # given a policy of 2 restarts a minute
    p = RestartPolicy(True, 2)
    err = StageError("stage x killed by signal SIGKILL")
    # then two are allowed, the third within the minute is not, and one after it is
    assert p.allow(err, "x", now=0.0) and p.allow(err, "x", now=10.0)
    assert not p.allow(err, "x", now=50.0)
    assert p.allow(err, "y", now=61.0)
    assert p.counts == {"x": 2, "y": 1}


def test_bad_input_and_disabled_policy_never_restart():
    err = StageError("boom")
    assert not RestartPolicy(False, 5).allow(err, "x", now=0.0)
    assert not RestartPolicy(True, 5).allow(ConfigError("bad key"), "x", now=0.0)


def test_restart_defaults_follow_liveness_and_configs_pickle():
    # given a file stream and a live one, then restarts default off for files, on for live
    files = parse_config({"streams": [{"name": "a", "source": "a.mp4"}]})
    live = parse_config({"streams": [{"name": "a", "source": "rtsp://cam/1"}]})
    assert not files.restart_enabled and live.restart_enabled
    forced = parse_config({"streams": [{"name": "a", "source": "a.mp4"}], "supervision": {"restart": True}})
    assert forced.restart_enabled
    assert pickle.loads(pickle.dumps(forced)) == forced
    with pytest.raises(ConfigError, match="supervision.bogus"):
        parse_config({"streams": [{"name": "a", "source": "a.mp4"}], "supervision": {"bogus": 1}})


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_log_tail_counts_lines_after_the_last_stats(tmp_path, fmt):
    # given a log holding an earlier run (frames 0-4), then this run's frames 0-2999 and a torn last line
    out = SimpleNamespace(dir=str(tmp_path), format=fmt)

    def line(n: int) -> str:
        return json.dumps({"stream": "cam1", "frame": n}) + "\n" if fmt == "jsonl" else f"cam1,{n},0.0,0.0,x,0.5\n"

    header = "stream,frame,pts,time,label1,score1\n" if fmt == "csv" else ""
    text = header + "".join(map(line, range(5))) + header + "".join(map(line, range(3000)))
    (tmp_path / f"cam1.{fmt}").write_text(text + line(3000)[:7])
    # then the last whole line is found, and lines are counted back to the given frame across chunks
    assert last_logged_frame(out, "cam1") == 2999
    assert list(logged_frames(out, "cam1", chunk=100))[:3] == [2999, 2998, 2997]
    assert logged_after(out, "cam1", 2899) == 100
    assert logged_after(out, "cam1", 2999) == 0
    # and counting stops at the start of this run, not in the earlier run's lines
    assert logged_after(out, "cam1", -1) == 3000
    # and stats taken before the stream's first line (no last frame) count the same way
    assert logged_after(out, "cam1", None) == 3000
    # and a missing log counts nothing
    assert logged_after(SimpleNamespace(dir=str(tmp_path / "none"), format=fmt), "cam1", -1) == 0
