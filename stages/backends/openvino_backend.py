"""OpenVINO on CPU: fp32 or bf16 (AMX/AVX-512 BF16) from the ONNX export; int8 from NNCF's
accuracy-controlled quantisation (int8 kernels where they keep the top-1, the rest in fp32)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np


class OpenVinoBackend:
    def __init__(self, path: str, precision: str, threads: int, extra: Optional[dict[str, Any]] = None) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(path)
        # int8: the ops kept in float run in fp32, as the accuracy control measured them (bf16 there
        # costs about two points of agreement)
        hint = {"bf16": "bf16", "fp32": "f32", "int8": "f32"}[precision]
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                          "INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.details = {"model_file": path, "engine_version": ov.get_version(), **(extra or {})}

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        # copy: the output tensor's memory is reused by the next inference
        return self.request.get_output_tensor(0).data.copy()


def load(model: Any, ctx: Any) -> OpenVinoBackend:
    from stages.backends.cache import INT8_DETAILS, export_onnx, quantized_openvino

    if ctx.precision == "int8":
        path, info = quantized_openvino(model, ctx)
        return OpenVinoBackend(str(path), "int8", ctx.threads, {k: info[k] for k in INT8_DETAILS if k in info})
    return OpenVinoBackend(str(export_onnx(model, ctx)), ctx.precision, ctx.threads)
