"""The thread and core numbers a stage applies, as the plan decided them (videoclf.plan.budget).

Records only: the plan fills them once, the specs carry them into the stage processes, and a
stage applies them without deciding anything. Where a choice needs a figure only a stage can
measure (an engine's speed, known after its model compiles), the record carries the plan's
rule and its inputs, and the stage feeds it the measurement (``SplitRule.predict``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional


@dataclass(frozen=True, kw_only=True)
class DecodeThreads:
    """One decoder's threads. ``lean``: its count beside an engine that measured one stream on
    the CPU (Control.lean_decode); equal to ``threads`` when leaning changes nothing."""

    threads: int = 0  # FFmpeg threads, or GOP threads for a file of closed GOPs (0: FFmpeg's choice)
    lean: int = 0

    def __post_init__(self) -> None:
        if not self.lean:
            object.__setattr__(self, "lean", self.threads)


class CoreSplit(NamedTuple):
    split: bool  # a core to the decoder, the rest to the engine
    split_fps: float
    shared_fps: float


@dataclass(frozen=True, kw_only=True)
class SplitRule:
    """Whether an engine of several streams leaves a large file's decoder a core, predicted
    from what a frame costs to decode (measured by the plan) and to infer (measured by the
    engine, alone on one core fewer and shared on every core)."""

    decode_s: float  # CPU s one thread spends decoding and preparing a frame of the file
    cores: int
    frame_threading_cost: float  # CPU a frame costs on FFmpeg's frame threads, against one thread
    split_efficiency: float  # the share of a split machine left once the other processes have run

    def predict(self, alone_ips: float, shared_ips: float) -> CoreSplit:
        """Split: the decoder's one thread keeps a core (at most 1 / ``decode_s`` frames/s),
        the engine runs on the rest at ``alone_ips``. Shared: every core does both, the
        decoder on frame threads, the engine at ``shared_ips`` on all cores."""
        split = self.split_efficiency * min(1.0 / self.decode_s, alone_ips)
        shared = self.cores / (self.frame_threading_cost * self.decode_s + self.cores / shared_ips)
        return CoreSplit(split > shared, split, shared)


@dataclass(frozen=True, kw_only=True)
class EngineThreads:
    """The inference engine's threads and streams, and what it may leave the decoders."""

    threads: int  # inference threads
    streams: Optional[int] = None  # engine streams (None: the engine measures the fastest)
    spare_core: bool = False  # beside large file frames: one engine stream runs on ``threads - 1``
    split: Optional[SplitRule] = None  # several engine streams beside one large file: split or share
    lean_decoders: bool = False  # the decoders have a lean count: say when the engine runs one CPU stream
