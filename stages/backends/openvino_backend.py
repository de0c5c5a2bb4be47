"""OpenVINO on CPU: fp32 or bf16 (AMX/AVX-512 BF16) from the ONNX export, int8 from the
quantised QDQ export (OpenVINO turns the Q/DQ pairs into int8 kernels)."""
from __future__ import annotations

from typing import Any

import numpy as np


class OpenVinoBackend:
    def __init__(self, path: str, precision: str, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(path)
        hint = {"bf16": "bf16", "fp32": "f32", "int8": "f32"}[precision]  # int8 layers stay int8 either way
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                          "INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.details = {"model_file": path, "engine_version": ov.get_version()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        # copy: the output tensor's memory is reused by the next inference
        return self.request.get_output_tensor(0).data.copy()


def load(model: Any, ctx: Any) -> OpenVinoBackend:
    from stages.backends.cache import export_onnx, quantized_onnx

    path = quantized_onnx(model, ctx) if ctx.precision == "int8" else export_onnx(model, ctx)
    return OpenVinoBackend(str(path), ctx.precision, ctx.threads)
