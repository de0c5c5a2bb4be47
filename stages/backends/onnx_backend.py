"""onnxruntime on CPU: fp32 export, or int8 QDQ quantised by NNCF with the ops OpenVINO's
accuracy control kept in float left in float; both cached."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np


class OnnxBackend:
    def __init__(self, path: str, threads: int, extra: Optional[dict[str, Any]] = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one batch at a time: inter-op threads would only oversubscribe
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.details = {"model_file": path, "engine_version": ort.__version__, **(extra or {})}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": np.ascontiguousarray(batch, np.float32)})[0]


def load(model: Any, ctx: Any) -> OnnxBackend:
    from stages.backends.cache import INT8_DETAILS, export_onnx, quantized_onnx

    if ctx.precision == "int8":
        path, info = quantized_onnx(model, ctx)
        return OnnxBackend(str(path), ctx.threads, {k: info[k] for k in INT8_DETAILS if k in info})
    return OnnxBackend(str(export_onnx(model, ctx)), ctx.threads)
