"""onnxruntime on CPU: fp32 export, or int8 QDQ quantised by NNCF with the ops OpenVINO's
accuracy control kept in float left in float; both cached.

The session runs the model behind a small prefix graph (Cast → Transpose → Mul → Sub), so it
takes the decoder's uint8 NHWC frames like the other engines; the prefixed copy is cached
beside the model it wraps."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from videoclf.stages.classify.backends import SyncEngine

def with_u8_prefix(path: Path, mean: tuple[float, ...], std: tuple[float, ...]) -> Path:
    """``path`` (float NCHW input named "input") behind a uint8 NHWC input "frames"."""
    out = path.with_name(path.stem + "-u8nhwc.onnx")
    if out.exists():
        return out
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    model = onnx.load(str(path))
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(1, 3, 1, 1).astype(np.float32)
    bias = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(1, 3, 1, 1).astype(np.float32)
    prefix = helper.make_graph(
        [helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Transpose", ["f"], ["chw"], perm=[0, 3, 1, 2]),
         helper.make_node("Mul", ["chw", "scale"], ["scaled"]),
         helper.make_node("Sub", ["scaled", "bias"], ["input"])],
        "u8_prefix",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", None, None, 3])],
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(bias, "bias")])
    pre = helper.make_model(prefix, opset_imports=model.opset_import, ir_version=model.ir_version)
    merged = compose.merge_models(pre, model, io_map=[("input", "input")], prefix1="pre_")
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    onnx.save(merged, str(tmp))
    os.replace(tmp, out)
    return out


class OnnxBackend(SyncEngine):
    def __init__(self, path: str, threads: int, extra: Optional[dict[str, Any]] = None) -> None:
        import onnxruntime as ort

        super().__init__()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one batch at a time: inter-op threads would only oversubscribe
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.details = {"model_file": path, "engine_version": ort.__version__, **(extra or {})}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC batch → logits."""
        return self.session.run(None, {self.input: np.ascontiguousarray(batch, np.uint8)})[0]

    def run_float(self, batch: np.ndarray) -> np.ndarray:
        """A model without the prefix: float NCHW batch → logits."""
        return self.session.run(None, {self.input: np.ascontiguousarray(batch, np.float32)})[0]


def load(src: Any, ctx: Any) -> OnnxBackend:
    from videoclf.stages.classify.backends.cache import INT8_DETAILS, export_onnx, quantized_onnx

    spec = ctx.cfg.spec
    if ctx.precision == "int8":
        path, info = quantized_onnx(src, ctx)
        extra = {k: info[k] for k in INT8_DETAILS if k in info}
    else:
        path, extra = export_onnx(src, ctx), {}
    backend = OnnxBackend(str(with_u8_prefix(Path(path), spec.mean, spec.std)), ctx.threads, extra)
    backend.details["model_file"] = str(path)  # the model itself; the prefixed copy sits beside it
    return backend
