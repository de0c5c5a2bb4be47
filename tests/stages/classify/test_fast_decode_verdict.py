"""The fast decode's verdict: `videoclf tune` measures the model's top-1 agreement between the
fast decode (no loop filter) and the normal one on the footage; ``decode.fast: auto`` follows it."""
from __future__ import annotations

import json
import logging

import numpy as np

from conftest import SAMPLE
from videoclf.config.load import parse_config
from videoclf.config.schema import ModelConfig
from videoclf.plan.compose import make_plan
from videoclf.stages.classify.backends.cache import normalise
from videoclf.stages.classify.backends.fast_decode import fast_choice, measure, verdict_path
from videoclf.stages.classify.backends.source import ModelSource
from videoclf.stages.classify.backends.tune import BOUND


def test_tune_measures_the_fast_decode_against_the_normal_one_on_real_weights(tmp_path):
    # given real ImageNet weights and the shipped sample
    cfg = ModelConfig(backbone="efficientnet_lite0", weights="imagenet", cache_dir=str(tmp_path / "cache"), threads=2)
    import torch

    model = ModelSource(cfg).model

    def logits(u8: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(normalise(cfg, u8))).numpy()

    # when the fast decode is measured on 24 frames of it
    v = measure(cfg, [str(SAMPLE)], 24, logits)
    # then the fast frames differ from the normal ones, yet the model says the same of most of them
    assert v["frames"] == 24 and v["pixels_changed"] > 0
    assert v["overall_agreement"] >= 0.8, v
    assert 0 < v["confident_frames"] <= 24 and v["bound"] == BOUND
    assert v["agreement_holds"] == (v["confident_agreement"] >= BOUND)
    # and the verdict is where decode.fast auto reads it
    assert json.loads(verdict_path(cfg).read_text())["confident_agreement"] == v["confident_agreement"]
    on, why = fast_choice(cfg)
    assert on == v["agreement_holds"] and f"{100 * v['confident_agreement']:.1f} %" in why


def _plan_fast(tmp_path, fast) -> list[bool]:
    cfg = parse_config({"streams": [{"name": "a", "source": str(SAMPLE)},
                                    {"name": "b", "source": str(SAMPLE), "decode": {"fast": False}}],
                        "decode": {"fast": fast},
                        "model": {"backbone": "efficientnet_lite0", "weights": "none", "cache_dir": str(tmp_path)},
                        "output": {"dir": str(tmp_path / "out")}})
    plan = make_plan(cfg, "fastplan", None, "sink")
    return [dec.fast for _, dec in plan.decoders]


def _write_verdict(tmp_path, agreement: float) -> None:
    path = verdict_path(ModelConfig(backbone="efficientnet_lite0", weights="none", cache_dir=str(tmp_path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"confident_agreement": agreement, "confident_frames": 80, "bound": BOUND,
                                "agreement_holds": agreement >= BOUND}))


def test_auto_is_off_until_tuned_then_follows_the_verdict(tmp_path, caplog):
    # given no verdict: auto is off, and the run says so once
    with caplog.at_level(logging.INFO, logger="videoclf.plan.compose"):
        assert _plan_fast(tmp_path, "auto") == [False, False]
    said = [r.getMessage() for r in caplog.records if "decode.fast auto" in r.getMessage()]
    assert len(said) == 1 and "not measured yet" in said[0]
    # given a verdict at the bound: on (a stream that sets fast: false keeps it off)
    _write_verdict(tmp_path, BOUND)
    assert _plan_fast(tmp_path, "auto") == [True, False]
    # given one below it: off
    _write_verdict(tmp_path, BOUND - 0.02)
    assert _plan_fast(tmp_path, "auto") == [False, False]
    # and true and false are taken as they are
    assert _plan_fast(tmp_path, True) == [True, False]
