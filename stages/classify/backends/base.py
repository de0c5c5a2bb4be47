"""What every engine module shares: the engine interface, ``SyncEngine``, the context an engine
builds itself from, and the CPU's float precision. The package's ``open_backend`` and each
engine module import this; it imports none of them (no import cycle)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Hashable, Optional, Protocol

import numpy as np

from videoclf.config.schema import ModelConfig
from videoclf.core.cpu import bf16_flags, cpu_has_bf16, cpu_has_vnni, isa_cap, usable_cores  # noqa: F401 (cpu_has_vnni: for tune)
from videoclf.core.threads import EngineThreads


class Backend(Protocol):
    depth: int  # batches that may be in flight at once

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def submit(self, frames: list[np.ndarray], tag: Hashable) -> None: ...

    def collect(self, block: bool) -> list[tuple[Hashable, np.ndarray]]: ...


class SyncEngine:
    """``submit``/``collect`` for engines that run one batch at a time: ``submit`` runs it."""

    depth = 1

    def __init__(self) -> None:
        self._done: deque[tuple[Hashable, np.ndarray]] = deque()

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def submit(self, frames: list[np.ndarray], tag: Hashable) -> None:
        batch = frames[0][None] if len(frames) == 1 else np.stack(frames)
        self._done.append((tag, self.run(batch)))

    def collect(self, block: bool) -> list[tuple[Hashable, np.ndarray]]:
        out = list(self._done)
        self._done.clear()
        return out


@dataclass(frozen=True)
class BackendContext:
    """What an engine needs to build itself: picklable facts, no heavy objects."""

    cfg: ModelConfig
    device: str
    precision: str
    threads: int
    weights_hash: str  # content hash of the weights: part of every cache key
    int8_model: Optional[str] = None  # the int8 IR that `videoclf tune` made and vetted, when auto chose it
    # the plan's engine threads, streams and core sharing (videoclf.plan.budget); None: ``threads``, measured streams
    engine: Optional[EngineThreads] = None

    @property
    def engine_threads(self) -> EngineThreads:
        return self.engine or EngineThreads(threads=self.threads)


@dataclass
class OpenedBackend:
    backend: Backend
    labels: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def isa_precision() -> tuple[str, str]:
    """The float precision this CPU runs fastest, and why."""
    if cpu_has_bf16():
        return "bf16", "bf16: the CPU has AVX-512 BF16/AMX"
    if bf16_flags():
        return "fp32", f"fp32: ONEDNN_MAX_CPU_ISA={isa_cap()} rules out the CPU's bf16 instructions"
    return "fp32", "fp32: the CPU has no bf16 instructions (AVX-512 BF16/AMX)"


def alone(cfg: ModelConfig) -> EngineThreads:
    """An engine with the machine to itself (tuning, benchmarks, tests): the config's threads
    or every usable core, its streams as configured. A run's engine gets the plan's instead."""
    streams = None if cfg.engine_streams == "auto" else int(cfg.engine_streams)
    return EngineThreads(threads=cfg.threads or usable_cores(), streams=streams)


def default_threads(cfg: ModelConfig) -> int:
    return alone(cfg).threads
