"""`videoclf tune`'s verdict on the fast decode (``decode.fast``: the H.264/HEVC loop filter
skipped), and ``decode.fast: auto`` reading it back.

The same frames of the config's file streams (else the shipped sample) are decoded twice,
normally and fast, and classified by the fp32 model. Agreement is counted as for int8
(videoclf.stages.classify.backends.tune): top-1 of the fast frame against the normal one, on
the frames where the normal decode's top-1 beats its top-2 by at least ``MARGIN``. ``auto``
turns the fast decode on when that agreement is at least the bound the tune holds int8 to
(``BOUND``, 99 %, or ``videoclf tune --bound``), and leaves it off until it is measured.

The verdict is kept per model (backbone, weights, classes, input size), not per CPU: decoding
gives the same pixels on every CPU.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from videoclf.stages.classify.backends.agreement import BOUND, MARGIN, confident_mask, store

SCAN = 300  # frames of each clip the pairs are picked from (10 s at 30 FPS: several GOPs)


def _model_tag(model: Any) -> str:
    """The model as configured: backbone, weights (a file's size and mtime too), classes, labels."""
    parts = [model.backbone, str(model.weights), str(model.num_classes), str(model.labels), str(model.crop)]
    if os.path.isfile(str(model.weights)):
        st = os.stat(str(model.weights))
        parts.append(f"{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def verdict_path(model: Any) -> Path:
    from videoclf.stages.classify.backends.cache import cache_dir

    return cache_dir(model.cache_dir) / "tune" / f"fastdecode-{model.backbone}-{model.crop}-{_model_tag(model)}.json"


def fast_choice(model: Any) -> tuple[bool, str]:
    """``decode.fast: auto``: (on or off, why)."""
    try:
        v = json.loads(verdict_path(model).read_text())
    except (OSError, ValueError):
        return False, "decode.fast auto: off, not measured yet for this model (videoclf tune CONFIG measures it)"
    agree = (f"{100 * v['confident_agreement']:.1f} % top-1 agreement with the normal decode on "
             f"{v['confident_frames']} confident frames (bound {100 * v['bound']:.1f} %)")
    if v["agreement_holds"]:
        return True, f"decode.fast auto: on, videoclf tune measured {agree}"
    return False, f"decode.fast auto: off, videoclf tune measured {agree}"


def frame_pairs(model: Any, sources: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``n`` frames spread over ``sources`` (each's first SCAN frames), decoded normally and
    fast: two uint8 NHWC arrays of the model's input, frame for frame."""
    share = max(1, -(-n // max(1, len(sources))))
    normal: list[np.ndarray] = []
    fast: list[np.ndarray] = []
    for source in sources:
        a, b = _pairs_of(model, source, share)
        normal += a
        fast += b
    return np.stack(normal), np.stack(fast)


def _pairs_of(model: Any, source: str, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from videoclf.stages.decode.file import DecodeConfig, open_video, to_model_rgb
    from videoclf.stages.decode.keyframes import set_fast

    geometry = DecodeConfig("tune", source, model.resize_to, model.crop)
    opened = [open_video(source), open_video(source)]
    out: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    try:
        set_fast(opened[1][1].codec_context, True)
        length = min(SCAN, _length(opened[0][1]))
        picks = set(np.linspace(0, length - 1, min(n, length)).round().astype(int).tolist())
        pairs = zip(*(c.decode(s) for c, s in opened))
        for i, frames in enumerate(pairs):
            if i >= length:
                break
            if i in picks:
                for side, frame in zip(out, frames):
                    side.append(to_model_rgb(frame, geometry).copy())
    finally:
        for c, _ in opened:
            c.close()
    return out


def _length(stream: Any) -> int:
    return int(stream.frames) if stream.frames else SCAN


def measure(model: Any, sources: list[str], n: int, logits: Callable[[np.ndarray], np.ndarray],
            bound: float = BOUND, margin: float = MARGIN) -> dict[str, Any]:
    """Agreement of the fast decode with the normal one on about ``n`` frames of ``sources``,
    classified by ``logits`` (uint8 NHWC → logits); stored where ``auto`` reads it and returned."""
    normal, fast = frame_pairs(model, sources, n)
    ref, got = logits(normal), logits(fast)
    confident = confident_mask(ref, margin)
    same = ref.argmax(1) == got.argmax(1)
    k = int(confident.sum())
    agree = float(same[confident].mean()) if k else 0.0
    verdict = {"backbone": model.backbone, "sources": sources, "frames": len(normal), "margin": margin,
               "bound": bound, "confident_frames": k, "confident_agreement": round(agree, 4),
               "overall_agreement": round(float(same.mean()), 4),
               "pixels_changed": round(float(np.mean(normal != fast)), 4),
               "agreement_holds": k > 0 and agree >= bound}
    verdict["verdict_file"] = str(store(verdict_path(model), verdict))
    return verdict
