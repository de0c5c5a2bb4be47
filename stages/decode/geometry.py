"""Where the model input comes from in a source frame, and where it lands in the input.

The whole frame follows the backbone's eval recipe: resize the shorter side to ``resize``,
keep the centre ``crop`` square. A zone (``roi`` or one of ``zones``) is a region the user
drew, and ``fit`` says how it becomes the square input:

- ``pad`` (default): the zone's longer side is scaled to ``crop`` keeping its aspect, and the
  rest of the square is filled with the ImageNet mean colour. Every pixel drawn is seen.
  Mean, not black: the engine normalises with the ImageNet mean and std, so the mean colour
  becomes 0 in every channel (no signal), while black becomes about -2 and draws hard
  edges along the bars that the model reads as picture content.
- ``crop``: the backbone's recipe applied to the zone (its centre square only).
- ``stretch``: each side scaled to ``crop`` (the whole zone, its aspect changed).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np

from videoclf.core.errors import InputError

MEAN_RGB = (124, 116, 104)  # ImageNet mean (0.485, 0.456, 0.406) x 255, rounded: the pad colour


@dataclass(frozen=True)
class Placement:
    """What to read from the frame and where it goes in the ``crop`` x ``crop`` input."""

    box: tuple[int, int, int, int]  # (x, y, w, h) in source pixels
    size: tuple[int, int]  # (w, h) the box is scaled to
    at: tuple[int, int]  # (x, y) of its top left corner in the input; the rest is MEAN_RGB


def fit_geometry(width: int, height: int, roi: Optional[Any], resize: int, key: str) -> tuple[int, int, int, int, float]:
    """Region (x, y, w, h) of the frame to classify and the scale that brings its shorter side
    to ``resize``. ``key``: the stream's name (``streams.<name>.roi`` in errors) or a whole
    config key such as ``streams.cam.zones.door``."""
    if roi is None:
        x, y, w, h = 0, 0, width, height
    else:
        x, y, w, h = roi.x, roi.y, roi.w, roi.h
        if x + w > width or y + h > height:
            where = key if key.startswith("streams.") else f"streams.{key}.roi"
            raise InputError(f"{where}: ({x}, {y}, {w}, {h}) lies outside the {width}x{height} frame")
    return x, y, w, h, resize / min(w, h)


def placement(width: int, height: int, roi: Optional[Any], resize: int, crop: int, key: str) -> Placement:
    """The model input of a ``width`` x ``height`` frame for ``roi`` (None: the whole frame)."""
    x, y, w, h, s = fit_geometry(width, height, roi, resize, key)
    fit = "crop" if roi is None else getattr(roi, "fit", "crop")
    if fit == "stretch":
        return Placement((x, y, w, h), (crop, crop), (0, 0))
    if fit == "pad":
        k = crop / max(w, h)
        ow, oh = min(crop, max(1, round(w * k))), min(crop, max(1, round(h * k)))
        return Placement((x, y, w, h), (ow, oh), ((crop - ow) // 2, (crop - oh) // 2))
    side = min(max(round(crop / s), 1), w, h)
    return Placement((x + (w - side) // 2, y + (h - side) // 2, side, side), (crop, crop), (0, 0))


@lru_cache(maxsize=8)
def _canvas(crop: int) -> np.ndarray:
    out = np.empty((crop, crop, 3), np.uint8)
    out[:] = MEAN_RGB  # a tuple broadcast costs ~0.4 ms at 224: made once, copied after
    out.flags.writeable = False
    return out


def pad_to(img: np.ndarray, crop: int, at: tuple[int, int]) -> np.ndarray:
    """``img`` (the scaled zone) at ``at`` on a ``crop`` x ``crop`` input of the pad colour."""
    out = _canvas(crop).copy()
    (x, y), (h, w) = at, img.shape[:2]
    out[y:y + h, x:x + w] = img
    return out
