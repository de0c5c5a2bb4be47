"""Classify stage: one process per device, batches across streams, softmax top-k.

The engine (torch, onnxruntime, OpenVINO) sits behind stages.backends; this stage only
turns a batch of slots into logits and logits into labelled results.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from pipeline.config import ModelConfig
from pipeline.messages import FrameRecord, Result
from pipeline.metrics import Histogram
from pipeline.stage import STAGES, StageBase

log = logging.getLogger(__name__)


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and indices of the k best classes per row, best first."""
    z = logits - logits.max(axis=1, keepdims=True)  # stable: exp never overflows
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    part = np.take_along_axis(probs, idx, axis=1)
    order = np.argsort(-part, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(idx, order, axis=1)


@STAGES.register("classify")
class Classifier(StageBase):
    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.infer = Histogram()
        self.batches = 0
        self.info: dict[str, Any] = {}

    def setup(self) -> None:
        from stages.backends import open_backend

        opened = open_backend(self.cfg)
        self.backend, self.labels, self.info = opened.backend, opened.labels, opened.info
        # warm-up passes at batch sizes we will see, so the first real batches carry no setup cost:
        # OpenVINO and onnxruntime prepare kernels per input shape on first use (a live camera's
        # first seconds would otherwise drop frames); eager torch has no per-shape setup
        sizes = {1, self.cfg.max_batch} if self.info["backend"] == "torch" else range(1, self.cfg.max_batch + 1)
        for n in sorted(sizes):
            self.backend.run(np.zeros((n, 3, self.cfg.crop, self.cfg.crop), np.float32))
        log.info("classifier ready: %s on %s (%s %s), weights %s", self.cfg.backbone, self.info["device"],
                 self.info["backend"], self.info["precision"], self.info["weights"])

    def process(self, inputs: Sequence[np.ndarray], records: Sequence[FrameRecord]) -> list[Result]:
        t0 = time.perf_counter()
        scores, idx = top_k(self.backend.run(np.stack(inputs)), self.cfg.top_k)
        ms = (time.perf_counter() - t0) * 1000
        self.infer.add(ms)
        self.batches += 1
        n = len(records)
        return [Result(rec, tuple((self.labels[i], round(float(s), 5)) for i, s in zip(idx[k], scores[k])), ms, n)
                for k, rec in enumerate(records)]

    def stats(self) -> dict[str, Any]:
        return {"model": self.info, "batches": self.batches, "infer_ms": self.infer.to_dict()}
