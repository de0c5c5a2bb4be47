"""Config parsing: valid files, and each bad input gives one line naming file, key and value."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from videoclf.config.schema import Config, redact
from videoclf.config.load import load_config, parse_config
from videoclf.core.errors import ConfigError

BASE = {"streams": [{"name": "cam1", "source": "a.mp4"}]}


def test_defaults_are_the_offline_lite0_setup():
    cfg = parse_config(BASE)
    assert cfg.model.backbone == "efficientnet_lite0"
    assert cfg.model.weights == "imagenet"
    assert cfg.output.dir == "out" and cfg.output.format == "jsonl"
    assert cfg.target_fps == 30
    assert (cfg.model.crop, cfg.model.resize_to) == (224, 256)


def test_derived_sizes_follow_a_custom_input_size():
    cfg = parse_config({**BASE, "model": {"input_size": 160}})
    assert cfg.model.crop == 160 and cfg.model.resize_to == round(160 * 256 / 224)


def test_file_sources_are_lossless_and_live_sources_drop_oldest():
    cfg = parse_config({"streams": [{"name": "f", "source": "a.mp4"},
                                    {"name": "r", "source": "rtsp://h/x"},
                                    {"name": "o", "source": "rtsp://h/y", "policy": "lossless"}]})
    assert [s.effective_policy for s in cfg.streams] == ["lossless", "drop_oldest", "lossless"]


@pytest.mark.parametrize("data, expected", [
    ({"streams": []}, "streams"),
    ({}, "streams: Field required"),
    ({"streams": [{"name": "a", "source": "x", "bogus": 1}]}, "streams.0.bogus: unknown key"),
    ({**BASE, "model": {"backbone": "vgg99"}}, "unknown backbone 'vgg99'; valid: efficientnet_b0"),
    ({**BASE, "target_fps": "fast"}, "target_fps: Input should be a valid number"),
    ({"streams": [{"name": "a", "source": "x"}, {"name": "a", "source": "y"}]}, "duplicate stream name 'a'"),
    ({**BASE, "model": {"device": "tpu"}}, "model.device"),
    ({**BASE, "model": {"max_batch": 0}}, "model.max_batch"),
    ({"streams": [{"name": "bad name!", "source": "x"}]}, "streams.0.name"),
    ({**BASE, "output": {"timezone": "Mars/Olympus_Mons"}}, "output.timezone: unknown time zone"),
    ({**BASE, "output": {"timezone": "Europe"}}, "output.timezone: unknown time zone"),  # a folder of zones
    ({**BASE, "output": {"timezone": "../../etc/passwd"}}, "output.timezone: unknown time zone"),
])
def test_bad_config_names_key_and_value(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cam.yaml")
    msg = str(err.value)
    assert msg.startswith("cam.yaml: ") and expected in msg
    assert "\n" not in msg


def test_the_overlay_time_zone_is_an_iana_name_and_defaults_to_the_system_zone():
    assert parse_config(BASE).output.timezone is None
    assert parse_config({**BASE, "output": {"timezone": "Europe/Paris"}}).output.timezone == "Europe/Paris"
    assert parse_config({**BASE, "output": {"timezone": "UTC"}}).output.timezone == "UTC"


def test_unknown_backbone_lists_every_valid_one():
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "model": {"backbone": "nope"}})
    for name in ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                 "shufflenet_v2_x1_0", "efficientnet_b0", "efficientnet_lite0"):
        assert name in str(err.value)


def test_unparsable_yaml_reports_the_line(tmp_path: Path):
    p = tmp_path / "broken.yaml"
    p.write_text("streams:\n  - name: a\n    source: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(p) in str(err.value) and "line 4" in str(err.value)


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_come_from_the_environment_and_are_redacted(monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "s3cret")
    cfg = parse_config({"streams": [{"name": "a", "source": "rtsp://admin:${CAM_PASSWORD}@10.1.1.1/live"}]})
    assert cfg.streams[0].source == "rtsp://admin:s3cret@10.1.1.1/live"
    assert redact(cfg.streams[0].source) == "rtsp://admin:***@10.1.1.1/live"


def test_unset_environment_variable_is_named():
    with pytest.raises(ConfigError, match=r"streams\.0\.source: environment variable NOPE_NOT_SET is not set"):
        parse_config({"streams": [{"name": "a", "source": "rtsp://u:${NOPE_NOT_SET}@h/x"}]})


def test_relative_source_found_beside_the_config(tmp_path: Path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("streams:\n  - {name: a, source: clip.mp4}\n")
    monkeypatch.chdir("/")
    assert load_config(cfg_file).streams[0].source == str(tmp_path / "clip.mp4")


def test_relative_calibration_clips_found_beside_the_config(tmp_path: Path, monkeypatch):
    # given int8 calibration on a list of clips named relative to the config file
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("streams:\n  - {name: a, source: a.mp4}\nmodel: {calibration: [a.mp4, b.mp4]}\n")
    monkeypatch.chdir("/")
    # then each is resolved beside the config, in order
    assert load_config(cfg_file).model.calibration == (str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"))


def test_config_survives_pickle():
    cfg = parse_config({**BASE, "streams": [{"name": "a", "source": "x.mp4", "roi": {"x": 1, "y": 2, "w": 3, "h": 4}}]})
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(sub, type) and issubclass(sub, Config.__base__) and sub is not model:
                    walk(sub)

    walk(Config)


def test_int8_calibrates_on_the_file_streams_by_default():
    # given int8 with no calibration clip named, over two file streams (one twice) and a camera
    streams = [{"name": "a", "source": "a.mp4"}, {"name": "b", "source": "rtsp://cam/1"},
               {"name": "c", "source": "c.mp4"}, {"name": "d", "source": "a.mp4"}]
    cfg = parse_config({**BASE, "streams": streams, "model": {"precision": "int8"}})
    # then it calibrates on the frames of the files it will classify, each once
    assert cfg.model.calibration == ("a.mp4", "c.mp4")
    # and a named clip, another precision or cameras only leave the setting alone
    named = parse_config({**BASE, "streams": streams, "model": {"precision": "int8", "calibration": "x.mp4"}})
    assert named.model.calibration == "x.mp4"
    assert parse_config({**BASE, "streams": streams, "model": {"precision": "bf16"}}).model.calibration is None
    live = parse_config({**BASE, "streams": streams[1:2], "model": {"precision": "int8"}})
    assert live.model.calibration is None


def test_a_file_pattern_source_is_one_stream_per_file(tmp_path):
    # given a folder of recordings and a stream whose source is a pattern
    for name in ("b 2.mp4", "a1.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    cfg = parse_config({"streams": [{"name": "arch", "source": str(tmp_path / "*.mp4"), "loop": True},
                                    {"name": "cam", "source": "rtsp://cam/1?x=*"}]})
    # then each matching file is a stream of its own, named after it, with the stream's settings
    assert [(s.name, Path(s.source).name, s.loop) for s in cfg.streams[:2]] == [
        ("arch-a1", "a1.mp4", True), ("arch-b_2", "b 2.mp4", True)]
    assert cfg.streams[2].source == "rtsp://cam/1?x=*"  # a URL is never a pattern
    # and a pattern that matches nothing is a config error naming the stream
    with pytest.raises(ConfigError, match=r"streams.0.source: no file matches"):
        parse_config({"streams": [{"name": "arch", "source": str(tmp_path / "*.mkv")}]})
