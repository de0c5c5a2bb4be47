"""Inference backends behind one small interface: ``run(uint8 NHWC batch) → float32 logits``.

The engines take the decoder's cropped RGB frames as they are: mean/std and the NHWC → NCHW
change happen inside the engine (OpenVINO's PrePostProcessor, an ONNX prefix graph, or the
first ops of the torch wrapper), so shared memory carries a quarter of the bytes of float
frames and no process normalises on its own. Engines that run asynchronously (OpenVINO) also
offer ``submit``/``collect``; the others get them from ``SyncEngine``.

Each engine lives in its own module and is imported only when chosen, so a missing optional
engine never breaks the others. ``open_backend`` resolves ``auto`` (device, precision,
engine) and hands the engine a ``ModelSource``: the torch model is built only when no cached
export exists for the weights' content hash, so a warm start imports neither torch nor
torchvision.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from typing import Optional

from videoclf.config.schema import ModelConfig
from videoclf.core.cpu import cpu_has_bf16, cpu_has_vnni, isa_cap  # noqa: F401 (re-exported)
from videoclf.core.errors import ConfigError
from videoclf.core.threads import EngineThreads
from videoclf.stages.classify.backends.base import (Backend, BackendContext, OpenedBackend, SyncEngine,  # noqa: F401
                                                    alone, default_threads, isa_precision)

log = logging.getLogger(__name__)

MODULES = {"torch": "videoclf.stages.classify.backends.torch_backend", "onnxruntime": "videoclf.stages.classify.backends.onnx_backend",
           "openvino": "videoclf.stages.classify.backends.openvino_backend"}
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


def _nvidia_present() -> bool:
    """A CUDA device needs the NVIDIA driver's device nodes: without them, CPU, and no torch import."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")


def resolve_device(requested: str) -> str:
    if requested == "auto":
        if not _nvidia_present():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device: {requested!r} requested but no CUDA device is available")
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"model.device: {requested!r} but only {torch.cuda.device_count()} CUDA device(s)")
    return requested


def resolve_precision(requested: str, device: str, cfg: Optional[ModelConfig] = None,
                      weights_id: Optional[str] = None) -> tuple[str, str, Optional[str]]:
    """(precision, why it was chosen, the tuned int8 model to run or None).

    ``auto`` on CPU is the ISA's float precision, or int8 when ``videoclf tune`` has measured
    on this CPU, for these weights, that int8 keeps its agreement on confident frames and is
    faster."""
    if requested == "auto":
        if device.startswith("cuda"):
            return "fp16", "fp16: CUDA device", None
        precision, why = isa_precision()
        if cfg is not None and weights_id is not None:
            from videoclf.stages.classify.backends.tune import auto_choice

            return auto_choice(cfg, weights_id, precision, why)
        return precision, why, None
    if requested == "fp16" and not device.startswith("cuda"):
        raise ConfigError("model.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return requested, f"{requested}: set in the config", None


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


def open_backend(cfg: ModelConfig, threads: Optional[EngineThreads] = None) -> OpenedBackend:
    """Build the chosen engine for ``cfg`` (in the classify child). The torch model is built
    only when the engine has no cached export for these weights. ``threads``: the plan's
    (beside a run's decoders, an OpenVINO engine may leave them a core); None: ``alone``."""
    import sys

    from videoclf.stages.classify.backends.source import ModelSource

    device = resolve_device(cfg.device)
    src = ModelSource(cfg)
    # the tuned verdict is looked up by the weights' hash; weights known only once loaded
    # (torchvision downloads) are not looked up, so they never load torch just for this
    wid = src.weights_id if (cfg.precision == "auto" and src.known_before_loading) else None
    precision, why, tuned = resolve_precision(cfg.precision, device, cfg, wid)
    name, note = resolve_backend(cfg.backend, device, precision)
    if note:
        log.warning("%s", note)
    if tuned and name != "openvino":  # the tuned int8 model is an OpenVINO IR
        precision, why, tuned = (*isa_precision(), None)
        name, note = resolve_backend(cfg.backend, device, precision)
    engine = threads or alone(cfg)
    threads = engine.threads
    if cfg.threads != threads:
        cfg = cfg.model_copy(update={"threads": threads})  # the torch model, if built, uses them too
        src.cfg = cfg
    ctx = BackendContext(cfg, device, precision, threads, src.weights_id, tuned, engine)
    backend = importlib.import_module(MODULES[name]).load(src, ctx)
    info = {"backbone": cfg.backbone, "weights": src.description, "pretrained": src.pretrained,
            "device": device, "precision": precision, "precision_reason": why, "backend": name,
            "threads": threads, "input": cfg.crop, "input_format": "uint8 NHWC",
            "torch_imported": "torch" in sys.modules,
            **({"backend_note": note} if note else {}), **getattr(backend, "details", {})}
    log.info("precision %s (%s)", precision, why)
    return OpenedBackend(backend, src.labels, info)
