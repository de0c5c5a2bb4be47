"""Classify stage: one process per device, batches across streams, softmax top-k.

The engine (torch, onnxruntime, OpenVINO) sits behind videoclf.stages.classify.backends; this stage only
turns batches of uint8 frames into logits and logits into labelled results. Batches are
submitted and collected separately, so an asynchronous engine keeps several in flight while
the next one is gathered; results always come back in submission order.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from videoclf.config.schema import ModelConfig
from videoclf.core.records import FrameRecord, Result
from videoclf.core.histogram import Histogram
from videoclf.core.stats import ClassifierStats
from videoclf.core.contract import STAGES, StageBase
from videoclf.core.threads import EngineThreads

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


@dataclass(frozen=True, kw_only=True)
class ClassifyConfig:
    """The classifier's config: the user's model section, untouched, and the plan's threads."""

    model: ModelConfig
    threads: EngineThreads
    zones: int = 1  # the most model inputs one frame brings (a stream's zones): warmed up too


@STAGES.register("classify")
class Classifier(StageBase):
    def __init__(self, config: ClassifyConfig) -> None:
        self.cfg = cfg = config.model
        self.threads = config.threads
        self.zones = config.zones
        self.infer = Histogram()
        self.batches = 0
        self.info: dict[str, Any] = {}
        self.max_batch = 8 if cfg.max_batch == "auto" else int(cfg.max_batch)
        self._sent: dict[int, tuple[Sequence[FrameRecord], float]] = {}
        self._order: deque[int] = deque()
        self._zones: dict[int, list[int]] = {}  # per batch, per frame: its zones (0: none)
        self._next = 0

    @property
    def one_cpu_stream(self) -> bool:
        """Measured once the engine is built: it runs one stream on the CPU, each inference
        spread over all its threads (the fact the plan's lean decode waits for, BatchStage)."""
        return self.info.get("device") == "cpu" and self.info.get("streams") == 1

    def setup(self) -> None:
        from videoclf.stages.classify.backends import open_backend

        opened = open_backend(self.cfg, self.threads)
        self.backend, self.labels, self.info = opened.backend, opened.labels, opened.info
        self.max_batch = int(getattr(self.backend, "max_batch", self.max_batch))
        self.depth = int(getattr(self.backend, "depth", 1))
        # warm-up passes at batch sizes we will see, so the first real batches carry no setup cost:
        # OpenVINO and onnxruntime prepare kernels per input shape on first use (a live camera's
        # first seconds would otherwise drop frames); eager torch has no per-shape setup
        top = max(self.max_batch, self.zones)  # a frame's zones go into one batch, however many
        sizes = {1, self.max_batch, self.zones} if self.info["backend"] == "torch" else range(1, top + 1)
        for n in sorted(sizes):
            self.backend.run(np.zeros((n, self.cfg.crop, self.cfg.crop, 3), np.uint8))
        log.info("classifier ready: %s on %s (%s %s, %s), batch %d, %d in flight, weights %s", self.cfg.backbone,
                 self.info["device"], self.info["backend"], self.info["precision"], self.info["precision_reason"],
                 self.max_batch, self.depth, self.info["weights"])

    @property
    def full(self) -> bool:
        """No engine slot free: collect before submitting."""
        return len(self._order) >= self.depth

    @property
    def pending(self) -> int:
        return len(self._order)

    def submit(self, inputs: Sequence[np.ndarray], records: Sequence[FrameRecord]) -> None:
        """Start one batch. ``inputs`` (HWC uint8 views of the shared-memory slots) must stay
        valid until ``collect`` returns the batch. A frame of a stream with zones is an
        N×H×W×C view: one input per zone, each with its own result."""
        tag = self._next
        self._next += 1
        self._sent[tag] = (records, time.perf_counter())
        self._order.append(tag)
        self.backend.submit([img for v in inputs for img in (v if v.ndim == 4 else (v,))], tag)
        self._zones[tag] = [len(v) if v.ndim == 4 else 0 for v in inputs]

    def collect(self, block: bool) -> list[tuple[Sequence[FrameRecord], list[Result]]]:
        """Finished batches, oldest first: their records (whose slots may now be released) and results."""
        out = []
        for tag, logits in self.backend.collect(block):
            records, t0 = self._sent.pop(tag)
            head = self._order.popleft()  # engines hand batches back in submission order
            if head != tag:
                raise RuntimeError(f"engine returned batch {tag} before batch {head}")
            ms = (time.perf_counter() - t0) * 1000
            self.infer.add(ms)
            self.batches += 1
            scores, idx = top_k(logits, self.cfg.top_k)
            n, rows = len(logits), iter(range(len(logits)))
            results = []
            for rec, zones in zip(records, self._zones.pop(tag)):
                for zone in (range(zones) if zones else (None,)):
                    k = next(rows)
                    top = tuple((self.labels[i], round(float(s), 5)) for i, s in zip(idx[k], scores[k]))
                    results.append(Result(rec, top, ms, n, zone=zone))
            out.append((records, results))
        return out

    def stats(self) -> ClassifierStats:
        return ClassifierStats(model=dict(self.info), batches=self.batches, infer_ms=self.infer.copy(),
                               batch=self.max_batch, in_flight=self.depth)
