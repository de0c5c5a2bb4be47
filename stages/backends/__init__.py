"""Inference backends behind one small interface: ``run(float32 NCHW batch) → float32 logits``.

Each engine lives in its own module and is imported only when chosen, so a missing optional
engine never breaks the others. ``open_backend`` resolves ``auto`` (device, precision,
engine), builds the torch model once (it is the source every export is made from) and hands
it to the engine, which may export and cache it.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np

from pipeline.config import ModelConfig
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

MODULES = {"torch": "stages.backends.torch_backend", "onnxruntime": "stages.backends.onnx_backend",
           "openvino": "stages.backends.openvino_backend"}
# the Python package each engine needs; `auto` skips engines whose package does not import
PACKAGES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}
# extra packages an engine needs for one precision: int8 is quantised by NNCF, whose OpenVINO
# accuracy control also decides which ops onnxruntime keeps in float
PRECISION_PACKAGES = {("openvino", "int8"): ("nncf",), ("onnxruntime", "int8"): ("nncf", "openvino")}
# precisions each engine runs on CPU (CUDA runs through torch only)
CPU_PRECISIONS = {"torch": {"fp32", "bf16"}, "onnxruntime": {"fp32", "int8"},
                  "openvino": {"fp32", "bf16", "int8"}}
# measured on this 2-core AVX-512/AMX machine (batch 8): OpenVINO is fastest in every precision
# it supports, torch bf16 next; onnxruntime has no bf16 CPU kernels
AUTO_ORDER_CPU = ("openvino", "torch", "onnxruntime")


class Backend(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class BackendContext:
    """What an engine needs to build itself: picklable facts, no heavy objects."""

    cfg: ModelConfig
    device: str
    precision: str
    threads: int
    weights_hash: str  # content hash of the loaded weights: part of every cache key


@dataclass
class OpenedBackend:
    backend: Backend
    labels: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_vnni() -> bool:
    """int8 dot products without the 16-bit intermediate that older AVX2/AVX-512 int8 code
    saturates (VNNI or AMX): full 8-bit weights are safe."""
    flags = _cpu_flags()
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def available(name: str, precision: Optional[str] = None) -> bool:
    """True when the engine's package (and those it needs for ``precision``, if any) can be
    imported (a None entry in sys.modules blocks it)."""
    return _importable(PACKAGES[name]) and not missing_for(name, precision)


def missing_for(name: str, precision: Optional[str]) -> list[str]:
    """Packages the engine needs for ``precision`` that do not import."""
    return [pkg for pkg in PRECISION_PACKAGES.get((name, precision or ""), ()) if not _importable(pkg)]


def _importable(pkg: str) -> bool:
    import sys

    if pkg in sys.modules:
        return sys.modules[pkg] is not None
    try:
        return importlib.util.find_spec(pkg) is not None
    except (ImportError, ValueError):
        return False


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


def resolve_precision(requested: str, device: str) -> str:
    if requested == "auto":
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if requested == "fp16" and not device.startswith("cuda"):
        raise ConfigError("model.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return requested


def resolve_backend(requested: str, device: str, precision: str) -> tuple[str, Optional[str]]:
    """Engine to use and, when ``auto`` had to skip a faster one, a note saying why."""
    cuda = device.startswith("cuda")
    if requested != "auto":
        if not available(requested):
            raise ConfigError(f"model.backend: {requested!r} is not installed (pip install {PACKAGES[requested]}); "
                              "use backend: auto or torch")
        if cuda and requested != "torch":
            raise ConfigError(f"model.backend: {requested!r} runs on CPU here; use torch for {device}")
        if not cuda and precision not in CPU_PRECISIONS[requested]:
            raise ConfigError(f"model.precision: {precision} is not supported by backend {requested} on CPU "
                              f"(supported: {', '.join(sorted(CPU_PRECISIONS[requested]))})")
        missing = missing_for(requested, precision)
        if missing:
            raise ConfigError(f"model.precision: {precision} on backend {requested} needs {' and '.join(missing)}, "
                              f"not installed (pip install {' '.join(missing)})")
        return requested, None
    if cuda:
        return "torch", None
    skipped = []
    for name in AUTO_ORDER_CPU:
        if precision not in CPU_PRECISIONS[name]:
            continue
        if available(name, precision):
            note = f"backend auto: {', '.join(skipped)} not installed, using {name}" if skipped else None
            return name, note
        missing = missing_for(name, precision)
        skipped.append(f"{' and '.join(missing)} (for {name} {precision})" if available(name) else name)
    raise ConfigError(f"model.precision: no installed backend runs {precision} on CPU "
                      f"(not installed: {', '.join(skipped)})")


def default_threads(cfg: ModelConfig) -> int:
    from pipeline.budget import inference_threads

    return cfg.threads or inference_threads()


def open_backend(cfg: ModelConfig) -> OpenedBackend:
    """Load the backbone and build the chosen engine on it (in the classify child)."""
    import torch

    from stages.backbones import load_model
    from stages.backends.cache import state_hash

    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    name, note = resolve_backend(cfg.backend, device, precision)
    if note:
        log.warning("%s", note)
    threads = default_threads(cfg)
    torch.set_num_threads(threads)
    if cfg.weights == "none":
        torch.manual_seed(0)  # random weights, but the same ones every run: exports stay cacheable
    loaded = load_model(cfg.backbone, cfg.weights, cfg.num_classes, cfg.labels)
    ctx = BackendContext(cfg, device, precision, threads, state_hash(loaded.model))
    engine = importlib.import_module(MODULES[name]).load(loaded.model, ctx)
    info = {"backbone": cfg.backbone, "weights": loaded.weights, "pretrained": loaded.pretrained,
            "device": device, "precision": precision, "backend": name, "threads": threads,
            "input": cfg.crop, **({"backend_note": note} if note else {}), **getattr(engine, "details", {})}
    return OpenedBackend(engine, loaded.labels, info)
