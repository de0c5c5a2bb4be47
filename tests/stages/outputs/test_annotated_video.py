"""Annotated video sink, end to end through the real multiprocess pipeline and the CLI."""
from __future__ import annotations

import json
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import ROOT, read_jsonl, run_cli


def decode_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(video=0)]


def first_luma(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return frame.to_ndarray(format="gray").astype(np.int16)


def test_annotated_mp4_has_one_frame_per_input_frame_with_its_timing_and_an_overlay(video_factory, write_config, tmp_path):
    # given a 320x240 30 fps clip of 45 frames and output.video on (random weights: labels do not matter here)
    src = video_factory("cam.mp4", width=320, height=240, frames=45)
    cfg = write_config([{"name": "cam", "source": str(src)}], model={"weights": "none"},
                       output={"dir": str(tmp_path / "out"), "video": True})
    # when the pipeline runs
    res = run_cli("run", str(cfg), "-q")
    # then the MP4 decodes to exactly the input's frames, with the input's timestamps and the label log's
    assert res.returncode == 0, res.stderr
    [out] = (tmp_path / "out").glob("cam_*.mp4")  # named by the wall-clock time of its first frame
    labels = read_jsonl(tmp_path / "out" / "cam.jsonl")
    got, want = decode_times(out), decode_times(src)
    assert len(got) == len(want) == len(labels) == 45
    assert np.allclose(got, want, atol=1e-3)
    assert np.allclose(got, [r["pts"] for r in labels], atol=1e-3)
    # and the overlay panel (top-left) differs from the source while the rest of the frame does not
    a, b = first_luma(out), first_luma(src)
    assert np.abs(a[:30, :120] - b[:30, :120]).mean() > 20
    assert np.abs(a[-60:, -100:] - b[-60:, -100:]).mean() < 6
    # and the report names the file and its frame count
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["streams"]["cam"]["video"] == {"files": [str(out)], "frames": 45}


def test_forced_segments_rotate_into_playable_files_that_add_up_to_the_input(video_factory, write_config, tmp_path):
    # given segment_seconds forced on a 2 s file (the live-stream rotation, applied to any stream)
    src = video_factory("seg.mp4", width=160, height=120, frames=60)
    cfg = write_config([{"name": "seg", "source": str(src)}], model={"weights": "none"},
                       output={"dir": str(tmp_path / "out"), "video": True, "segment_seconds": 0.5})
    # when it runs
    res = run_cli("run", str(cfg), "-q")
    # then there are 4 segments of 15 frames, each starting at t=0, named by the wall-clock time
    # of their first frame (a second's files numbered -1, -2 … after the first), in the report's order
    assert res.returncode == 0, res.stderr
    files = [Path(f) for f in json.loads((tmp_path / "out" / "report.json").read_text())["streams"]["seg"]["video"]["files"]]
    assert len(files) == 4 and all(f.exists() for f in files)
    assert all(re.fullmatch(r"seg_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(-\d)?\.mp4", f.name) for f in files)
    assert sorted(f.name for f in (tmp_path / "out").glob("seg_*.mp4")) == sorted(f.name for f in files)
    times = [decode_times(f) for f in files]
    assert [len(t) for t in times] == [15, 15, 15, 15]
    assert all(abs(t[0]) < 1e-3 for t in times)


def test_sigint_mid_run_leaves_a_finalized_mp4_whose_frames_match_the_label_log(video_factory, write_config, tmp_path):
    # given a clip being written with video on, looped so the run is still going when signalled
    src = video_factory("long.mp4", width=320, height=240, frames=300)
    cfg = write_config([{"name": "long", "source": str(src), "loop": True}], model={"weights": "none"},
                       output={"dir": str(tmp_path / "out"), "video": True})
    log = tmp_path / "out" / "long.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 20):
            time.sleep(0.2)
        # when SIGINT arrives mid-run
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # then the MP4 opens and plays to its last frame, which is the label log's last frame
    assert proc.returncode == 0, err
    labels = read_jsonl(log)
    [video] = (tmp_path / "out").glob("long_*.mp4")
    got = decode_times(video)
    assert len(labels) >= 20
    assert len(got) == len(labels)
    assert got[-1] == pytest.approx(labels[-1]["pts"], abs=1e-3)


def test_outputs_and_decode_configs_pickle():
    # given the configs a child receives
    from videoclf.core.records import DisplayGeom
    from videoclf.config.outputs import AlertRule
    from videoclf.stages.decode.file import DecodeConfig
    from videoclf.stages.outputs.stage import OutputsConfig
    from videoclf.stages.outputs.labels import SinkConfig

    geom = DisplayGeom(1920, 1080, 29.97, every_frame=True)
    cfgs = [geom, DecodeConfig("a", "a.mp4", 256, 224, None, 0, geom),
            OutputsConfig("sink.jsonl", SinkConfig("out", ("a",)), (geom,), True, (None,),
                          (AlertRule(when=("ambulance",), webhook="http://127.0.0.1:9/x"),), True)]
    # when they go through pickle, then they come back equal
    for c in cfgs:
        assert pickle.loads(pickle.dumps(c)) == c
    assert geom.shape == (1620, 1920)
