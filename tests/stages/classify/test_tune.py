"""`videoclf tune` and `precision: auto`: int8 is chosen only where a cached verdict for these
weights on this CPU says its agreement on confident held-out frames holds and it is faster."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLE, read_jsonl, run_cli
from videoclf.config.schema import ModelConfig
from videoclf.stages.classify.backends import isa_precision
from videoclf.stages.classify.backends.source import ModelSource
from videoclf.stages.classify.backends.tune import auto_choice, confident_mask, verdict_path


def test_confident_frames_are_those_whose_top1_beats_top2_by_the_margin():
    # given logits whose softmax top-1/top-2 are (0.50, 0.45), (0.60, 0.30) and (0.9, 0.05)
    probs = np.array([[0.50, 0.45, 0.05], [0.60, 0.30, 0.10], [0.90, 0.05, 0.05]])
    logits = np.log(probs) + 3.0  # softmax is shift-invariant
    # then only margins of at least 0.1 count as confident
    assert confident_mask(logits, 0.1).tolist() == [False, True, True]
    assert confident_mask(logits, 0.5).tolist() == [False, False, True]


def _verdict(tmp_path, **fields):
    cfg = ModelConfig(cache_dir=str(tmp_path / "cache"))
    wid = ModelSource(cfg).weights_id
    model = tmp_path / "int8" / "model.xml"
    model.parent.mkdir(exist_ok=True)
    model.write_text("<net/>")
    v = {"confident_agreement": 0.995, "confident_frames": 200, "bound": 0.99, "agreement_holds": True,
         "int8_faster": True, "int8_images_per_s": 300.0, "float_images_per_s": 150.0, "float_precision": "fp32",
         "int8_model": str(model), **fields}
    path = verdict_path(cfg, wid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(v))
    return cfg, wid


def test_auto_takes_int8_only_with_a_passing_faster_verdict(tmp_path):
    float_precision, why = isa_precision()
    # given no verdict, then auto keeps the ISA's float precision and says how to tune
    cfg = ModelConfig(cache_dir=str(tmp_path / "none"))
    precision, reason, model = auto_choice(cfg, ModelSource(cfg).weights_id, float_precision, why)
    assert (precision, model) == (float_precision, None) and "videoclf tune" in reason
    # given a verdict whose agreement holds and whose int8 is faster, then auto runs its model
    cfg, wid = _verdict(tmp_path)
    precision, reason, model = auto_choice(cfg, wid, float_precision, why)
    assert precision == "int8" and model.endswith("model.xml") and "99.5 %" in reason
    # given one whose agreement falls short, or whose int8 is slower, then float, saying why
    cfg, wid = _verdict(tmp_path, confident_agreement=0.97, agreement_holds=False)
    precision, reason, _ = auto_choice(cfg, wid, float_precision, why)
    assert precision == float_precision and "rejected" in reason and "97.0 %" in reason
    cfg, wid = _verdict(tmp_path, int8_faster=False, int8_images_per_s=100.0)
    precision, reason, _ = auto_choice(cfg, wid, float_precision, why)
    assert precision == float_precision and "not faster" in reason


@pytest.mark.slow
def test_tune_measures_held_out_confident_frames_and_auto_follows_its_verdict(tmp_path, write_config):
    # given the shipped sample and real weights, a few frames (the full step is minutes)
    cache = str(tmp_path / "cache")
    cfg = write_config([{"name": "bbb", "source": str(SAMPLE)}], max_frames=20,
                       model={"backbone": "efficientnet_lite0", "weights": "imagenet", "cache_dir": cache,
                              "threads": 2})
    # when videoclf tune runs on it
    res = run_cli("tune", str(cfg), "--frames", "12", "--bound", "0.9", timeout=900)
    assert res.returncode == 0, res.stderr
    path = res.stdout.strip().splitlines()[-1].removeprefix("verdict: ")
    v = json.loads(open(path).read())
    # then it calibrated on 12 frames and measured 12 others, counting the confident ones apart
    assert v["calibration_frames"] == 12 and v["held_out_frames"] == 12
    assert 0 <= v["confident_frames"] <= 12 and v["confident_share"] == round(v["confident_frames"] / 12, 4)
    assert v["agreement_holds"] == (v["confident_frames"] > 0 and v["confident_agreement"] >= 0.9)
    assert v["int8_faster"] == (v["int8_images_per_s"] > v["float_images_per_s"])
    # and it measured the fast decode on the held-out count of frames, reported beside int8's
    fast = [line for line in res.stdout.splitlines() if line.startswith("fast decode")]
    assert len(fast) == 1 and "on 12 frames" in fast[0] and "bound 90.0 %" in fast[0], res.stdout
    # and a run with precision auto follows the verdict, and says why in its report
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    model = json.loads((tmp_path / "out" / "report.json").read_text())["model"]
    expect = "int8" if v["agreement_holds"] and v["int8_faster"] else isa_precision()[0]
    assert model["precision"] == expect and "videoclf tune" in model["precision_reason"], model
    assert len(read_jsonl(tmp_path / "out" / "bbb.jsonl")) == 20
