"""onnxruntime on CPU: fp32 export or int8 QDQ quantisation, both cached."""
from __future__ import annotations

from typing import Any

import numpy as np


class OnnxBackend:
    def __init__(self, path: str, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one batch at a time: inter-op threads would only oversubscribe
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.details = {"model_file": path, "engine_version": ort.__version__}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": np.ascontiguousarray(batch, np.float32)})[0]


def load(model: Any, ctx: Any) -> OnnxBackend:
    from stages.backends.cache import export_onnx, quantized_onnx

    path = quantized_onnx(model, ctx) if ctx.precision == "int8" else export_onnx(model, ctx)
    return OnnxBackend(str(path), ctx.threads)
