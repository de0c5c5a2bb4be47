"""Which sink a plan chooses for smoothing and label changes: the label log alone smooths;
label_change takes the outputs sink, without display pools when nothing else needs pixels; a
stream added with label_change to a run whose sink writes label logs only keeps that sink."""
from __future__ import annotations

import logging

from conftest import make_video
from videoclf.config.load import parse_config
from videoclf.config.smoothing import LabelChange
from videoclf.plan.compose import make_plan, with_stream


def _cfg(tmp_path, **top):
    clip = make_video(tmp_path / "c.mp4", 64, 48, frames=5)
    return parse_config({"streams": [{"name": "a", "source": str(clip)}],
                         "model": {"backbone": "efficientnet_lite0", "weights": "none", "cache_dir": str(tmp_path)},
                         "output": {"dir": str(tmp_path / "out")}, **top})


def test_smoothing_alone_stays_in_the_label_log_sink(tmp_path):
    plan = make_plan(_cfg(tmp_path, smooth={"window": 4}), "smoothplan", None, "sink.jsonl")
    assert plan.sink_kind == "sink.jsonl" and plan.sink_cfg.smooth[0].window == 4 and plan.geoms is None


def test_label_change_takes_the_outputs_sink_without_display_frames(tmp_path):
    plan = make_plan(_cfg(tmp_path, smooth={"ema": 0.3}, label_change={"for_frames": 3}), "lcplan", None, "sink.jsonl")
    assert plan.sink_kind == "outputs.sink" and plan.geoms is None and plan.shm_bytes > 0
    cfg = plan.sink_cfg
    assert cfg.geoms == (None,) and cfg.label_change[0].for_frames == 3 and cfg.label.smooth[0].ema == 0.3
    assert plan.sink().display is None and not cfg.mqtt_events


def test_a_stream_added_with_label_change_keeps_a_label_log_sink_and_says_it_takes_a_restart(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    plan = make_plan(cfg, "addplan", None, "sink.jsonl")
    added = cfg.streams[0].model_copy(update={"name": "b", "label_change": LabelChange()})
    with caplog.at_level(logging.WARNING):
        grown = with_stream(plan, 1, added, 0)
    assert grown.sink_kind == "sink.jsonl" and grown.sink_cfg.streams == ("a", "b")
    assert "b: label_change takes a restart" in caplog.text
