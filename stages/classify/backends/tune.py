"""`videoclf tune`: decide once, on the config's own footage, whether int8 keeps its accuracy
on this CPU, and cache the verdict where `precision: auto` looks for it.

The frames are split in two: the even ones calibrate NNCF's accuracy-controlled
quantisation, the odd ones are held out and only measured. Agreement is counted on
*confident* frames, those where fp32's top-1 beats its top-2 by at least ``MARGIN`` in
softmax probability: a near-tie flips under any reduced precision and says nothing about
accuracy. The overall agreement and the share of confident frames are reported beside it.

``auto`` picks int8 only when the verdict for this backbone + weights + input size + CPU
says both: the agreement on confident held-out frames is at least ``BOUND``, and int8 runs
faster than the float precision the CPU would otherwise use.

The same fp32 model then measures the fast decode (no loop filter) against the normal decode,
on the same footage, margin and bound (videoclf.stages.classify.backends.fast_decode): the
verdict ``decode.fast: auto`` follows.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from videoclf.stages.classify.backends.agreement import BOUND, MARGIN, confident_mask, store  # noqa: F401

log = logging.getLogger(__name__)

def verdict_path(cfg: Any, weights_id: str) -> Path:
    from videoclf.stages.classify.backends.cache import cache_dir
    from videoclf.core.cpu import cpu_tag

    return cache_dir(cfg.cache_dir) / "tune" / f"{cfg.backbone}-{weights_id}-{cfg.crop}-cpu{cpu_tag()}.json"


def auto_choice(cfg: Any, weights_id: str, precision: str, why: str) -> tuple[str, str, Optional[str]]:
    """``precision: auto`` on CPU: (precision, why, tuned int8 model or None)."""
    path = verdict_path(cfg, weights_id)
    try:
        v = json.loads(path.read_text())
    except (OSError, ValueError):
        return precision, f"{why}; int8 not tuned for these weights on this CPU (videoclf tune CONFIG)", None
    agree = f"{100 * v['confident_agreement']:.1f} % agreement on {v['confident_frames']} confident held-out frames"
    if not v["agreement_holds"]:
        return precision, f"{why}; int8 rejected by videoclf tune: {agree}, below {100 * v['bound']:.1f} %", None
    if not v["int8_faster"]:
        return precision, (f"{why}; videoclf tune: int8 holds its accuracy ({agree}) but is not faster here "
                           f"({v['int8_images_per_s']:.0f} vs {v['float_images_per_s']:.0f} images/s)"), None
    if not Path(v["int8_model"]).exists():
        return precision, f"{why}; the tuned int8 model {v['int8_model']} is gone (run videoclf tune again)", None
    return "int8", (f"int8: videoclf tune measured {agree} (bound {100 * v['bound']:.1f} %) and "
                    f"{v['int8_images_per_s']:.0f} vs {v['float_images_per_s']:.0f} images/s in "
                    f"{v['float_precision']}"), v["int8_model"]


def _ov_logits(path: str, frames: np.ndarray, threads: int) -> np.ndarray:
    """fp32 OpenVINO logits of a float NCHW model (the reference the quantisation is held to)."""
    import openvino as ov

    from videoclf.stages.classify.backends.int8_nncf import logits

    props = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    return logits(ov.Core().compile_model(path, "CPU", props), frames)


def _speed(path: str, precision: str, cfg: Any, threads: int) -> float:
    """Best images/s over the measured streams x batch sizes (the plan is cached for later runs)."""
    from videoclf.stages.classify.backends.openvino_backend import Input, OpenVinoBackend

    spec = cfg.spec
    engine = OpenVinoBackend(path, precision, threads, Input(cfg.crop, spec.mean, spec.std), None)
    return max(engine.plan["images_per_s"].values())


def tune(config: Any, frames: int = 120, bound: float = BOUND, margin: float = MARGIN) -> dict[str, Any]:
    """Quantise on the even of ``2 * frames`` frames of the config's file streams (else the
    shipped sample), measure the odd ones, cache and return the verdict."""
    from videoclf.config.assets import sample_clip
    from videoclf.stages.classify.backends.base import BackendContext, cpu_has_vnni, default_threads, isa_precision
    from videoclf.stages.classify.backends.cache import (_publish_ir, _source_tag, cache_dir, export_onnx, model_frames, model_key,
                                       normalise)
    from videoclf.stages.classify.backends.fast_decode import measure as measure_fast
    from videoclf.stages.classify.backends.int8_nncf import quantize
    from videoclf.stages.classify.backends.source import ModelSource

    sources = list(dict.fromkeys(s.source for s in config.streams if not s.is_live)) or [str(sample_clip())]
    cfg = config.model.model_copy(update={"calibration": tuple(sources), "precision": "int8"})
    threads = default_threads(cfg)
    src = ModelSource(cfg)
    float_precision, _ = isa_precision()
    ctx = BackendContext(cfg, "cpu", "int8", threads, src.weights_id)
    start = time.monotonic()
    u8 = model_frames(cfg, 2 * frames)
    calib, held = u8[0::2], u8[1::2]
    fp32 = export_onnx(src, ctx)
    ref_c, ref_h = (_ov_logits(str(fp32), normalise(cfg, x), threads) for x in (calib, held))
    conf_c, conf_h = confident_mask(ref_c, margin), confident_mask(ref_h, margin)
    log.warning("tuning %s: accuracy-controlled int8 on %d frames of %s (%d confident), %d held out; "
                "one-time step, minutes", cfg.backbone, len(calib), ", ".join(sources), int(conf_c.sum()), len(held))
    checked = np.flatnonzero(conf_c) if conf_c.any() else None
    result = quantize(fp32, normalise(cfg, calib), ref_c.argmax(1), bound, threads, full_range=cpu_has_vnni(),
                      validate_on=checked)
    key = model_key(cfg.backbone, src.weights_id, cfg.crop, "int8",
                    f"tune-{_source_tag(sources)}-{len(calib)}f-m{round(margin * 100)}-a{round(bound * 1000)}")
    folder = cache_dir(cfg.cache_dir) / key
    info = {"int8_agreement": round(result.agreement, 4), "int8_calibration_frames": len(calib),
            "int8_quantized_ops": result.quantized_ops - len(result.float_ops),
            "int8_float_ops": len(result.float_ops), "int8_float_op_names": result.float_ops,
            "int8_quantise_s": round(time.monotonic() - start, 1)}
    shutil.rmtree(folder, ignore_errors=True)  # a new tune replaces the old one's model
    _publish_ir(folder, result.model, info)
    int8_model = str(folder / "model.xml")
    top1 = _ov_logits(int8_model, normalise(cfg, held), threads).argmax(1)
    same = top1 == ref_h.argmax(1)
    confident = int(conf_h.sum())
    conf_agree = float(same[conf_h].mean()) if confident else 0.0
    int8_speed = _speed(int8_model, "int8", cfg, threads)
    float_speed = _speed(str(fp32), float_precision, cfg, threads)
    verdict = {"backbone": cfg.backbone, "weights": src.description, "weights_id": src.weights_id,
               "sources": sources, "calibration_frames": len(calib), "held_out_frames": len(held),
               "margin": margin, "bound": bound, "confident_frames": confident,
               "confident_share": round(confident / max(1, len(held)), 4),
               "confident_agreement": round(conf_agree, 4), "overall_agreement": round(float(same.mean()), 4),
               "calibration_agreement": round(result.agreement, 4), "int8_float_ops": len(result.float_ops),
               "agreement_holds": confident > 0 and conf_agree >= bound,
               "int8_images_per_s": round(int8_speed, 1), "float_precision": float_precision,
               "float_images_per_s": round(float_speed, 1), "int8_faster": int8_speed > float_speed,
               "int8_model": int8_model, "threads": threads, "tune_s": round(time.monotonic() - start, 1)}
    verdict["verdict_file"] = str(store(verdict_path(cfg, src.weights_id), verdict))
    # the fast decode's verdict, measured with the same fp32 model, margin and bound
    fp32_logits = lambda u8: _ov_logits(str(fp32), normalise(cfg, u8), threads)  # noqa: E731
    verdict["fast_decode"] = measure_fast(cfg, sources, len(held), fp32_logits, bound, margin)
    return verdict
