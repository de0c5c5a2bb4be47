"""Fault domains end to end: three real cameras (GStreamer RTSP on 127.0.0.1) and a file run
through the CLI; one stage process is SIGKILLed and only its own domain is rebuilt."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FAST_MODEL, make_video, read_jsonl, shm_segments
from helpers_proc import assert_all_gone, kill_stage, line_count, stages_of, start_cli, wait_for
from live_helpers import needs_gst, serving

LIVE = {"watchdog_s": 2, "backoff_s": 0.2, "backoff_max_s": 1, "open_timeout_s": 2, "read_timeout_s": 2}
CAMS = ("c1", "c2", "c3")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "cam.mp4", 320, 180, frames=60, fps=30, gop=30)


def _config(tmp_path: Path, streams: list[dict[str, Any]], **top: Any) -> Path:
    data = {"streams": streams, "model": FAST_MODEL, "output": {"dir": str(tmp_path / "out")}, **top}
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _arrivals(out: Path, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Per stream, when each label line was decoded (the line's wall-clock ``time``)."""
    return {n: [r["time"] for r in read_jsonl(out / f"{n}.jsonl")] for n in names}


def _largest_gap(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end]
    return max((b - a for a, b in zip(inside, inside[1:])), default=float("inf"))


def _first_after(times: list[float], t: float) -> float:
    return min((x for x in times if x > t), default=float("inf")) - t


@pytest.fixture
def three_cameras(tmp_path, clip):
    with serving(clip) as start:
        cams = {n: start() for n in CAMS}
        cfg = _config(tmp_path, [{"name": n, "source": c.url(), "live": LIVE} for n, c in cams.items()])
        proc = start_cli("run", str(cfg), "-q", "--duration", "25")
        out = tmp_path / "out"
        started = time.time()
        try:
            wait_for(lambda: all(line_count(out / f"{n}.jsonl") >= 30 for n in CAMS), 120, "labels from every camera")
            yield proc, out, time.time() - started
        finally:
            if proc.poll() is None:
                proc.kill()


@needs_gst
@pytest.mark.slow
def test_a_killed_decoder_restarts_its_camera_alone(three_cameras):
    proc, out, _ = three_cameras
    before = stages_of(proc.pid)
    time.sleep(2)
    # when c1's decoder is SIGKILLed
    t_kill = time.time()
    kill_stage(proc.pid, "decode[c1]")
    time.sleep(8)
    after = stages_of(proc.pid)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    seen = _arrivals(out, CAMS)
    # then c2 and c3 never paused for more than a second around the kill
    for n in ("c2", "c3"):
        assert _largest_gap(seen[n], t_kill - 2, t_kill + 8) <= 1.0, n
    # and c1 logged again within 5 s, in a new decoder; nothing else was restarted
    assert _first_after(seen["c1"], t_kill) <= 5.0
    assert after["decode[c1]"].pid != before["decode[c1]"].pid
    assert all(after[t].pid == p.pid for t, p in before.items() if t != "decode[c1]")
    report = json.loads((out / "report.json").read_text())
    assert report["restarts"] == {"decode[c1]": 1}
    # and c1's numbering went on: every frame number is logged at most once, in order
    frames = [r["frame"] for r in read_jsonl(out / "c1.jsonl")]
    assert frames == sorted(set(frames))
    assert_all_gone(list(before.values()) + list(after.values()))
    assert not shm_segments()


@needs_gst
@pytest.mark.slow
def test_a_killed_classifier_is_rebuilt_while_the_decoders_keep_running(three_cameras):
    proc, out, first_label_s = three_cameras
    before = stages_of(proc.pid)
    # when the classifier is SIGKILLed
    t_kill = time.time()
    kill_stage(proc.pid, "classify[")
    time.sleep(10)
    after = stages_of(proc.pid)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    seen = _arrivals(out, CAMS)
    # then every camera logs again within the model's load time (the run's own first label,
    # which also paid for starting every process) + 2 s
    for n in CAMS:
        gap = min(_first_after(seen[n], t_kill + 0.5), float("inf"))
        assert gap <= first_label_s + 2, (n, gap, first_label_s)
    # and the decoders kept their processes; only the classifier's domain was rebuilt
    assert all(after[f"decode[{n}]"].pid == before[f"decode[{n}]"].pid for n in CAMS)
    assert after["classify[cpu]"].pid != before["classify[cpu]"].pid
    report = json.loads((out / "report.json").read_text())
    assert report["restarts"] == {"classify[cpu]": 1}
    assert_all_gone(list(before.values()) + list(after.values()))
    assert not shm_segments()


@pytest.mark.parametrize("victim", ["sink[", "classify[", "decode[a]"])
def test_a_killed_stage_of_a_file_run_loses_and_repeats_no_label(tmp_path, victim):
    # given a supervised run of two files that end
    a = make_video(tmp_path / "a.mp4", width=96, height=64, frames=2000)
    b = make_video(tmp_path / "b.mp4", width=64, height=96, frames=1500)
    cfg = _config(tmp_path, [{"name": "a", "source": str(a)}, {"name": "b", "source": str(b)}],
                  supervision={"restart": True})
    out = tmp_path / "out"
    proc = start_cli("run", str(cfg), "-q")
    try:
        wait_for(lambda: line_count(out / "a.jsonl") >= 40, 120, "the first labels")
        stages = list(stages_of(proc.pid).values())
        # when one stage is SIGKILLed mid-run
        kill_stage(proc.pid, victim)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then the run ends normally, and each label log holds every frame exactly once, in order
    assert proc.returncode == 0, err
    assert [r["frame"] for r in read_jsonl(out / "a.jsonl")] == list(range(2000))
    assert [r["frame"] for r in read_jsonl(out / "b.jsonl")] == list(range(1500))
    report = json.loads((out / "report.json").read_text())
    assert report["streams"]["a"]["frames"] == 2000 and report["streams"]["b"]["frames"] == 1500
    assert list(report["restarts"].values()) == [1] and next(iter(report["restarts"])).startswith(victim.rstrip("["))
    assert_all_gone(stages)
    assert not shm_segments()


def test_a_decoder_past_its_restart_limit_gives_its_stream_up_and_the_others_go_on(tmp_path):
    # given two looping files, restarts allowed once a minute per domain
    a = make_video(tmp_path / "a.mp4", width=96, height=64, frames=60)
    b = make_video(tmp_path / "b.mp4", width=64, height=96, frames=60)
    cfg = _config(tmp_path, [{"name": "a", "source": str(a), "loop": True}, {"name": "b", "source": str(b), "loop": True}],
                  supervision={"restart": True, "max_restarts_per_min": 1})
    out = tmp_path / "out"
    proc = start_cli("run", str(cfg), "-q", "--duration", "20")
    try:
        wait_for(lambda: line_count(out / "a.jsonl") >= 20, 120, "the first labels")
        stages = list(stages_of(proc.pid).values())
        # when a's decoder is killed, restarted, and killed again within the minute
        first = kill_stage(proc.pid, "decode[a]")
        wait_for(lambda: "decode[a]" in stages_of(proc.pid) and stages_of(proc.pid)["decode[a]"].pid != first.pid,
                 60, "decode[a] restarted")
        stages += stages_of(proc.pid).values()
        kill_stage(proc.pid, "decode[a]")
        t_gone = time.time()
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then the run went on with b and failed at the end, naming a, its restarts and the limit
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("videoclf: error:")]
    assert len(lines) == 1 and "stream a gave up after 1 restarts of decode[a]" in lines[0], err
    assert "max_restarts_per_min=1" in lines[0] and "the other streams ran to the end" in lines[0]
    report = json.loads((out / "report.json").read_text())
    assert report["error"]["kind"] == "SourceGaveUp" and report["restarts"] == {"decode[a]": 1}
    assert report["streams"]["a"]["end"] == "error"
    assert max(r["time"] for r in read_jsonl(out / "b.jsonl")) > t_gone + 5  # b kept going
    assert_all_gone(stages)
    assert not shm_segments()
