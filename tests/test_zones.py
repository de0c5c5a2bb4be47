"""Named zones through the real CLI and its processes: one decode, a label log per zone with
the same frame numbers, each zone classified from its own crop, exactly once across a
SIGKILL, and config mistakes in one line each."""
from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from conftest import FAST_MODEL, run_cli
from helpers_proc import assert_all_gone, kill_run_after, line_count, stages_of, start_cli, wait_for
from live_helpers import needs_gst, serving

# three 64x64 zones over differently coloured thirds of a 192x64 picture
ZONES = [{"name": "red", "x": 0, "y": 0, "w": 64, "h": 64}, {"name": "green", "x": 64, "y": 0, "w": 64, "h": 64},
         {"name": "blue", "x": 128, "y": 0, "w": 64, "h": 48, "fit": "stretch"}]


def thirds_clip(path: Path, frames: int) -> Path:
    """Red, green and blue thirds whose brightness moves with the frame number."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(30, 1))
        s.width, s.height, s.pix_fmt = 192, 64, "yuv420p"
        for i in range(frames):
            img = np.zeros((64, 192, 3), np.uint8)
            v = 80 + (i * 5) % 170
            img[:, :64, 0], img[:, 64:128, 1], img[:, 128:, 2] = v, v, v
            img[8:24, 8 + i % 40:24 + i % 40] = 255  # something that moves, in each third
            img[8:24, 72 + i % 40:88 + i % 40] = 255
            img[30:46, 136 + i % 40:152 + i % 40] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def logged(out: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]


def write(path: Path, streams: list[dict], out: Path, **model) -> Path:
    path.write_text(yaml.safe_dump({"streams": streams, "model": {**FAST_MODEL, **model}, "output": {"dir": str(out)}}))
    return path


def scores(line: dict) -> dict[str, float]:
    return {t["label"]: t["score"] for t in line["top"]}


def test_three_zones_log_the_same_frames_each_from_its_own_crop(tmp_path):
    # given one file with three zones, and in the same run (the same engine) three streams of
    # the same file, each with one of the zones as its roi
    clip = thirds_clip(tmp_path / "thirds.mp4", 24)
    out = tmp_path / "out"
    solos = [{"name": f"solo_{z['name']}", "source": str(clip), "roi": {k: v for k, v in z.items() if k != "name"}}
             for z in ZONES]
    cfg = write(tmp_path / "z.yaml", [{"name": "cam", "source": str(clip), "zones": ZONES}, *solos], out,
                weights="imagenet", input_size=96)  # trained weights: each colour scores its own labels
    # when it runs
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    # then each zone has its own log, <stream>.<zone>.jsonl, with every frame, named so
    logs = {z["name"]: logged(out, f"cam.{z['name']}") for z in ZONES}
    assert not (out / "cam.jsonl").exists()
    for name, lines in logs.items():
        assert [x["frame"] for x in lines] == list(range(24))
        assert {x["stream"] for x in lines} == {f"cam.{name}"}
    # and each zone's labels are those of its own crop: the roi stream of that zone
    for name, lines in logs.items():
        for zl, sl in zip(lines, logged(out, f"solo_{name}")):
            assert [t["label"] for t in zl["top"]] == [t["label"] for t in sl["top"]], (name, zl, sl)
            assert scores(zl) == pytest.approx(scores(sl), abs=2e-3)
    # and the zones differ from each other (they are not one crop logged three times)
    assert [scores(x) for x in logs["red"]] != [scores(x) for x in logs["green"]]
    assert [scores(x) for x in logs["green"]] != [scores(x) for x in logs["blue"]]


def test_a_run_with_zones_killed_with_sigkill_resumes_each_zone_from_its_own_log(tmp_path):
    # given a long clip with three zones, run whole into one directory
    clip = thirds_clip(tmp_path / "long.mp4", 600)
    stream = [{"name": "cam", "source": str(clip), "zones": ZONES}]
    whole, out = tmp_path / "whole", tmp_path / "out"
    res = run_cli("run", str(write(tmp_path / "a.yaml", stream, whole, input_size=96)), "-q")
    assert res.returncode == 0, res.stderr
    expected = {z["name"]: [x["frame"] for x in logged(whole, f"cam.{z['name']}")] for z in ZONES}
    assert all(v == list(range(600)) for v in expected.values())
    # and into another, its main process SIGKILLed mid-way
    cfg = write(tmp_path / "b.yaml", stream, out, input_size=96)
    kill_run_after(cfg, out / "cam.red.jsonl", 60)
    held = {z["name"]: line_count(out / f"cam.{z['name']}.jsonl") for z in ZONES}
    assert min(held.values()) < 600, "the run had finished before the kill"
    # when one zone's log is cut back further (the zones' logs end at different frames)
    red = (out / "cam.red.jsonl").read_text().splitlines(keepends=True)
    (out / "cam.red.jsonl").write_text("".join(red[:len(red) // 2]))
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    # then each zone's log holds every frame exactly once, in order
    for name, frames in expected.items():
        assert [x["frame"] for x in logged(out, f"cam.{name}")] == frames, name


@pytest.mark.parametrize("stream, key, message", [
    ({"name": "cam", "zones": [ZONES[0], {**ZONES[1], "name": "red"}]}, "streams.0: zones.1.name",
     "duplicate zone name 'red' in stream 'cam'"),
    ({"name": "cam", "roi": {"x": 0, "y": 0, "w": 8, "h": 8}, "zones": ZONES}, "streams.0",
     "roi and zones together"),
    ({"name": "cam", "zones": [{**ZONES[0], "name": "door", "x": 150}]}, "streams.cam.zones.door",
     "(150, 0, 64, 64) lies outside the 192x64 frame"),
])
def test_a_zone_mistake_is_one_line_and_exit_2(tmp_path, stream, key, message):
    clip = thirds_clip(tmp_path / "c.mp4", 4)
    cfg = write(tmp_path / "c.yaml", [{**stream, "source": str(clip)}], tmp_path / "out")
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and message in lines[0], res.stderr


def test_a_zone_named_like_another_stream_is_refused(tmp_path):
    clip = thirds_clip(tmp_path / "c.mp4", 4)
    cfg = write(tmp_path / "c.yaml", [{"name": "cam.red", "source": str(clip)},
                                      {"name": "cam", "source": str(clip), "zones": ZONES}], tmp_path / "out")
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "streams.1.zones" in lines[0] and "'cam.red' is also the name of stream" in lines[0], \
        res.stderr


def test_each_zone_has_its_row_in_report_json(tmp_path):
    # given one file with three zones
    clip = thirds_clip(tmp_path / "r.mp4", 12)
    out = tmp_path / "out"
    res = run_cli("run", str(write(tmp_path / "r.yaml", [{"name": "cam", "source": str(clip), "zones": ZONES}], out)),
                  "-q")
    assert res.returncode == 0, res.stderr
    # then report.json has a row per zone: its own frames, its stream's decode and source
    streams = json.loads((out / "report.json").read_text())["streams"]
    assert sorted(streams) == ["cam.blue", "cam.green", "cam.red"]
    for row in streams.values():
        assert row["frames"] == 12 and row["decoded"] == 12 and row["dropped"] == 0 and row["end"] == "end"
        assert row["input"]["width"] == 192


def test_each_zone_has_its_own_alerts(tmp_path):
    from videoclf.stages.classify.backbones import imagenet_labels

    # given a rule that any label opens (the outputs sink, with display frames), and three zones
    clip = thirds_clip(tmp_path / "e.mp4", 8)
    out = tmp_path / "out"
    cfg = tmp_path / "e.yaml"
    cfg.write_text(yaml.safe_dump({"streams": [{"name": "cam", "source": str(clip), "zones": ZONES}],
                                   "model": FAST_MODEL, "output": {"dir": str(out), "alerts": [
                                       {"when": imagenet_labels(), "min_score": 0.0, "cooldown_s": 3600}]}}))
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    # then each zone opens its own event, under its own name, and logs every frame
    opened = [e["stream"] for e in (json.loads(x) for x in (out / "events.jsonl").read_text().splitlines())
              if e["event"] == "open"]
    assert sorted(opened) == ["cam.blue", "cam.green", "cam.red"]
    assert all(line_count(out / f"cam.{z['name']}.jsonl") == 8 for z in ZONES)


def test_a_run_with_zones_takes_no_stream_change_while_it_goes_on(tmp_path):
    import signal

    # given a looping file with zones, running
    clip = thirds_clip(tmp_path / "l.mp4", 30)
    out = tmp_path / "out"
    zoned = {"name": "cam", "source": str(clip), "zones": ZONES, "loop": True}
    cfg = write(tmp_path / "l.yaml", [zoned], out)
    proc = start_cli("run", str(cfg), "-q")
    try:
        wait_for(lambda: line_count(out / "cam.red.jsonl") >= 10, 120, "10 labels")
        # when a stream is added to its config file
        write(tmp_path / "l.yaml", [zoned, {"name": "other", "source": str(clip), "loop": True}], out)
        time.sleep(3)
        red = line_count(out / "cam.red.jsonl")
        wait_for(lambda: line_count(out / "cam.red.jsonl") > red + 10, 60, "the zones going on")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    # then the run says it takes a restart, goes on with its zones and starts nothing new
    assert "a run with zones takes a restart" in err, err
    assert not (out / "other.jsonl").exists()
    assert proc.returncode == 0, err


@needs_gst
def test_a_live_camera_with_zones_logs_each_zone_with_the_same_frames(tmp_path):
    # given a real RTSP camera showing the three coloured thirds, with three zones
    clip = thirds_clip(tmp_path / "cam.mp4", 60)
    out = tmp_path / "out"
    live = {"watchdog_s": 3, "backoff_s": 0.2, "backoff_max_s": 0.5, "open_timeout_s": 3, "read_timeout_s": 3}
    with serving(clip) as start:
        cam = start()
        cfg = write(tmp_path / "c.yaml", [{"name": "cam", "source": cam.url(), "live": live, "zones": ZONES}], out)
        # when it is classified for a few seconds
        res = run_cli("run", str(cfg), "-q", "--duration", "6")
    assert res.returncode == 0, res.stderr
    # then each zone logged the same frames, in order, from the one decode
    frames = {z["name"]: [x["frame"] for x in logged(out, f"cam.{z['name']}")] for z in ZONES}
    assert len(frames["red"]) >= 10 and frames["red"] == sorted(set(frames["red"]))
    assert frames["red"] == frames["green"] == frames["blue"]
    report = json.loads((out / "report.json").read_text())["streams"]
    assert {report[f"cam.{z['name']}"]["decoded"] for z in ZONES} == {report["cam.red"]["decoded"]}


def test_the_python_api_names_each_zones_results(tmp_path):
    import videoclf

    # given a file with three zones, run through the Python API
    clip = thirds_clip(tmp_path / "a.mp4", 10)
    out = tmp_path / "out"
    cfg = {"streams": [{"name": "cam", "source": str(clip), "zones": ZONES}], "model": FAST_MODEL,
           "output": {"dir": str(out)}}
    results = list(videoclf.start(cfg))
    # then each zone's results carry its name, each as its own label log holds them
    for z in ZONES:
        name = f"cam.{z['name']}"
        mine = [(r.stream, r.frame, [t.label for t in r.top]) for r in results if r.stream == name]
        assert mine == [(x["stream"], x["frame"], [t["label"] for t in x["top"]]) for x in logged(out, name)]
        assert len(mine) == 10
    assert len(results) == 30


def test_validate_checks_each_zone_against_the_files_frame(tmp_path):
    clip = thirds_clip(tmp_path / "v.mp4", 4)
    zones = [ZONES[0], {**ZONES[1], "name": "door", "y": 20}]
    cfg = write(tmp_path / "v.yaml", [{"name": "cam", "source": str(clip), "zones": zones}], tmp_path / "out")
    res = run_cli("validate", str(cfg))
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "videoclf: error: streams.cam.zones.door: (64, 20, 64, 64) lies outside the 192x64 frame"], res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.jsonl"))


@pytest.mark.parametrize("victim", ["sink[", "classify[", "decode[cam]"])
def test_a_killed_stage_of_a_run_with_zones_loses_and_repeats_no_label(tmp_path, victim):
    from helpers_proc import kill_stage

    # given a supervised run of a file with three zones and a plain file beside it
    clip, other = thirds_clip(tmp_path / "z.mp4", 600), thirds_clip(tmp_path / "o.mp4", 300)
    out = tmp_path / "out"
    cfg = tmp_path / "k.yaml"
    cfg.write_text(yaml.safe_dump({"streams": [{"name": "cam", "source": str(clip), "zones": ZONES},
                                               {"name": "plain", "source": str(other)}],
                                   "model": FAST_MODEL, "output": {"dir": str(out)}, "supervision": {"restart": True}}))
    proc = start_cli("run", str(cfg), "-q")
    try:
        wait_for(lambda: line_count(out / "cam.red.jsonl") >= 40, 120, "the first labels")
        stages = list(stages_of(proc.pid).values())
        # when one stage is SIGKILLed mid-run
        kill_stage(proc.pid, victim)
        at_kill = line_count(out / "cam.blue.jsonl")
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert at_kill < 600, "the run had finished before the kill"
    # then the run ends normally, and each zone's log holds every frame exactly once, in order
    assert proc.returncode == 0, err
    for z in ZONES:
        assert [x["frame"] for x in logged(out, f"cam.{z['name']}")] == list(range(600)), z["name"]
    assert [x["frame"] for x in logged(out, "plain")] == list(range(300))
    report = json.loads((out / "report.json").read_text())
    assert list(report["restarts"].values()) == [1]
    assert all(report["streams"][f"cam.{z['name']}"]["frames"] == 600 for z in ZONES)
    assert_all_gone(stages)


def test_zones_are_refused_in_a_fleet_in_one_line(tmp_path):
    # given a stream with zones (the fleet's driver gathers one label log per stream)
    clip = thirds_clip(tmp_path / "f.mp4", 4)
    cfg = write(tmp_path / "f.yaml", [{"name": "cam", "source": str(clip), "zones": ZONES}], tmp_path / "out")
    # when it is validated for a fleet, or run on one (nothing listens at that address)
    for res in (run_cli("validate", str(cfg), "--ray", "auto", "--no-sources"),
                run_cli("run", str(cfg), "--ray", "127.0.0.1:9")):
        # then each exits 2 with one line naming the stream's zones
        assert res.returncode == 2, res.stderr
        assert res.stderr.count("\n") == 1 and res.stderr.startswith(
            "videoclf: error: streams.cam.zones: not available with --ray"), res.stderr


def test_a_file_with_zones_run_again_classifies_nothing_again(tmp_path):
    # given a file with zones classified to its end
    clip = thirds_clip(tmp_path / "d.mp4", 12)
    out = tmp_path / "out"
    cfg = write(tmp_path / "d.yaml", [{"name": "cam", "source": str(clip), "zones": ZONES}], out)
    assert run_cli("run", str(cfg), "-q").returncode == 0
    before = {z["name"]: (out / f"cam.{z['name']}.jsonl").read_text() for z in ZONES}
    # when it runs again
    res = run_cli("run", str(cfg))
    # then every zone's log is complete: nothing is classified again, each log unchanged
    assert res.returncode == 0, res.stderr
    assert "label log is complete: nothing to classify" in res.stderr, res.stderr
    assert {z["name"]: (out / f"cam.{z['name']}.jsonl").read_text() for z in ZONES} == before
