"""Classify stage: one process per device, batches across streams, softmax top-k."""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

import numpy as np

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError
from pipeline.messages import FrameRecord, Result
from pipeline.metrics import Histogram
from pipeline.stage import STAGES, StageBase

log = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: str) -> str:
    if requested == "auto":
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if requested == "fp16" and not device.startswith("cuda"):
        raise ConfigError("model.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return requested


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device: {requested!r} requested but no CUDA device is available")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"model.device: {requested!r} but only {torch.cuda.device_count()} CUDA device(s)")
    return requested


@STAGES.register("classify.torch")
class TorchClassifier(StageBase):
    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.infer = Histogram()
        self.batches = 0
        self.info: dict[str, Any] = {}

    def setup(self) -> None:
        import torch

        from stages.backbones import load_model

        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.device = resolve_device(self.cfg.device)
        loaded = load_model(self.cfg.backbone, self.cfg.weights, self.cfg.num_classes, self.cfg.labels)
        self.labels = loaded.labels
        self.precision = resolve_precision(self.cfg.precision, self.device)
        # channels_last lets oneDNN/cuDNN pick their fastest convolution kernels
        self.model = loaded.model.to(self.device, memory_format=torch.channels_last)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.info = {"backbone": self.cfg.backbone, "weights": loaded.weights, "pretrained": loaded.pretrained,
                     "device": self.device, "precision": self.precision, "threads": torch.get_num_threads(),
                     "input": self.cfg.crop}
        # warm-up passes at batch sizes we will see, so the first real batches carry no setup cost
        for n in sorted({1, self.cfg.max_batch}):
            self._forward(np.zeros((n, 3, self.cfg.crop, self.cfg.crop), np.float32))
        log.info("classifier ready: %s on %s, weights %s", self.cfg.backbone, self.device, loaded.weights)

    def process(self, inputs: Sequence[np.ndarray], records: Sequence[FrameRecord]) -> list[Result]:
        import torch

        t0 = time.perf_counter()
        scores, idx = self._forward(np.stack(inputs))
        ms = (time.perf_counter() - t0) * 1000
        self.infer.add(ms)
        self.batches += 1
        n = len(records)
        return [Result(rec, tuple((self.labels[i], round(float(s), 5)) for i, s in zip(idx[k], scores[k])), ms, n)
                for k, rec in enumerate(records)]

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = torch.from_numpy(batch).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=self.dtype or torch.float32,
                                                   enabled=self.dtype is not None):
            probs = self.model(x).float().softmax(dim=1)
            scores, idx = probs.topk(self.cfg.top_k, dim=1)
        return scores.cpu().numpy(), idx.cpu().numpy()

    def stats(self) -> dict[str, Any]:
        return {"model": self.info, "batches": self.batches, "infer_ms": self.infer.to_dict()}
