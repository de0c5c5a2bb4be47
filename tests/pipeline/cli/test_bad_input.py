"""Each bad input: one clear line naming the culprit, exit 2, no traceback."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import SAMPLE, make_audio_only, run_cli


def _assert_one_line_error(res, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr
    errors = [ln for ln in lines if ln.startswith("videoclf: error: ")]
    assert len(errors) == 1, lines
    for n in needles:
        assert n in errors[0], errors[0]


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.mp4", "file not found"),
    (lambda d: (d / "notes.mp4").write_text("not a video\n" * 50) and d / "notes.mp4", "not a readable video"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "file is empty (0 bytes)"),
    (lambda d: make_audio_only(d / "audio.m4a"), "has no video stream"),
], ids=["missing", "text-as-mp4", "zero-byte", "audio-only"])
def test_bad_source_file(tmp_path, write_config, make, needle):
    src = make(tmp_path)
    cfg = write_config([{"name": "ok", "source": str(SAMPLE)}, {"name": "bad", "source": str(src)}])
    _assert_one_line_error(run_cli("run", str(cfg)), str(src), needle)
    assert not (tmp_path / "out" / "ok.jsonl").exists()  # nothing started on bad input


@pytest.mark.parametrize("yaml_text, needles", [
    ("streams: []\n", ["streams"]),
    ("streams:\n  - {name: a, source: x.mp4, colour: red}\n", ["streams.0.colour: unknown key"]),
    ("streams:\n  - {name: a, source: x.mp4}\ntarget_fps: lots\n", ["target_fps", "'lots'"]),
    ("streams:\n  - {name: a, source: x.mp4}\nmodel: {backbone: alexnet}\n", ["unknown backbone 'alexnet'", "resnet18"]),
    ("streams:\n  - {name: a, source: x.mp4}\n  - {name: a, source: y.mp4}\n", ["duplicate stream name 'a'"]),
    ("streams:\n  - name: a\n    source: x.mp4\n   bad indent: 1\n", ["line 4", "invalid YAML"]),
    ("streams:\n  - {name: a, source: x.mp4}\noutput: {timezone: Paris}\n",
     [":3:20: output.timezone: unknown time zone", "'Paris'"]),
], ids=["no-streams", "unknown-key", "wrong-type", "unknown-backbone", "duplicate-names", "bad-yaml", "time-zone"])
def test_bad_config(tmp_path, yaml_text, needles):
    cfg = tmp_path / "cam.yaml"
    cfg.write_text(yaml_text)
    for cmd in ("run", "validate"):
        _assert_one_line_error(run_cli(cmd, str(cfg)), str(cfg), *needles)


def test_missing_weights_file(tmp_path, write_config):
    cfg = write_config([{"name": "a", "source": str(SAMPLE)}], model={"backbone": "resnet18", "weights": str(tmp_path / "w.pth")})
    _assert_one_line_error(run_cli("run", str(cfg)), "model.weights", str(tmp_path / "w.pth"), "not found")


def test_checkpoint_with_wrong_shapes(tmp_path, write_config):
    from videoclf.stages.classify.backbones import load_model

    ckpt = tmp_path / "five_classes.pth"
    torch.save(load_model("resnet18", "none", 5, None).model.state_dict(), ckpt)
    cfg = write_config([{"name": "a", "source": str(SAMPLE)}], model={"backbone": "resnet18", "weights": str(ckpt)})
    res = run_cli("run", str(cfg))
    _assert_one_line_error(res, str(ckpt), "does not fit resnet18 with 1000 classes")
    assert not (tmp_path / "out" / "a.jsonl").read_text()  # no frame was decoded before the model failed


def test_output_dir_that_is_a_file(tmp_path, write_config):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = write_config([{"name": "a", "source": str(SAMPLE)}], output={"dir": str(blocker / "out")})
    _assert_one_line_error(run_cli("run", str(cfg)), "output.dir", "is not a directory")


def test_every_config_mistake_is_reported_at_once_with_its_line_and_a_suggestion(tmp_path):
    # given a config with three mistakes: a misspelt key, a wrong value and an unknown backbone
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("streams:\n"
                   "  - name: cam1\n"
                   "    sourse: a.mp4\n"
                   "    policy: drop-oldest\n"
                   "model:\n"
                   "  backbone: resnet19\n")
    for cmd in ("validate", "run"):
        # when it is validated or run
        res = run_cli(cmd, str(cfg))
        # then it exits 2 with one line per mistake, in file order, each FILE:LINE:COL, and no traceback
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        lines = res.stderr.strip().splitlines()
        assert lines == [
            f"videoclf: error: {cfg}:3:5: streams.0.sourse: unknown key; did you mean 'source'?",
            f"videoclf: error: {cfg}:4:13: streams.0.policy: Input should be 'lossless' or 'drop_oldest' "
            "(got 'drop-oldest')",
            f"videoclf: error: {cfg}:6:13: model.backbone: unknown backbone 'resnet19'; did you mean 'resnet18'? "
            "valid: efficientnet_b0, efficientnet_lite0, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, "
            "resnet18, resnet50, shufflenet_v2_x1_0 (got 'resnet19')"], res.stderr


def test_a_zone_outside_a_large_files_frame_names_the_stream(tmp_path, write_config, video_factory):
    # given one file of over a megapixel a frame (whose decode cost the run measures before it
    # starts) and a zone that lies outside its frame
    src = video_factory(width=1280, height=800, frames=12)
    cfg = write_config([{"name": "dock", "source": str(src), "roi": {"x": 1200, "y": 0, "w": 200, "h": 200}}],
                       model={"backbone": "mobilenet_v3_small", "weights": "none", "backend": "openvino"})
    # then the run stops with one line naming the stream's zone and the frame size
    _assert_one_line_error(run_cli("run", str(cfg)), "streams.dock.roi", "lies outside the 1280x800 frame")
