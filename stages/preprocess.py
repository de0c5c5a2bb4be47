"""Preprocess stage: RGB uint8 HWC → normalised float32 CHW with the backbone's mean/std."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.stage import STAGES, StageBase


@dataclass(frozen=True)
class PreprocessConfig:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@STAGES.register("preprocess")
class Normalize(StageBase):
    def __init__(self, cfg: PreprocessConfig) -> None:
        # (x/255 - mean)/std == x*scale - bias, done in place in the destination slot
        std = np.asarray(cfg.std, np.float32).reshape(3, 1, 1)
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)
        self.bias = (np.asarray(cfg.mean, np.float32).reshape(3, 1, 1) / std).astype(np.float32)

    def process(self, src: np.ndarray, dst: np.ndarray) -> None:
        np.multiply(src.transpose(2, 0, 1), self.scale, out=dst)
        dst -= self.bias
