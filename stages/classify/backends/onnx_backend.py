"""onnxruntime on CPU: fp32 export, or int8 QDQ quantised by NNCF with the ops OpenVINO's
accuracy control kept in float left in float; both cached.

The session runs the model behind a small prefix graph (Cast → Transpose → Mul → Sub), so it
takes the decoder's uint8 NHWC frames like the other engines; the prefixed copy is cached
beside the model it wraps."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from videoclf.stages.classify.backends.base import SyncEngine

log = logging.getLogger(__name__)

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
    from videoclf.stages.classify.backends.cache import INT8_DETAILS, export_onnx

    spec = ctx.cfg.spec
    if ctx.precision == "int8":
        path, info = quantized_onnx(src, ctx)
        extra = {k: info[k] for k in INT8_DETAILS if k in info}
    else:
        path, extra = export_onnx(src, ctx), {}
    backend = OnnxBackend(str(with_u8_prefix(Path(path), spec.mean, spec.std)), ctx.threads, extra)
    backend.details["model_file"] = str(path)  # the model itself; the prefixed copy sits beside it
    return backend


def quantized_onnx(src: Any, ctx: Any) -> tuple[Path, dict[str, Any]]:
    """int8 QDQ ONNX for onnxruntime, cached: NNCF quantises the ONNX export with the ops that
    the OpenVINO accuracy control kept in float left in float (``quantized_openvino`` runs
    first, or is read from the cache). onnxruntime's own kernels and rounding differ, so the
    agreement it reaches on the calibration frames is measured again and reported."""
    import onnx

    from videoclf.core.cpu import cpu_has_vnni
    from videoclf.stages.classify.backends.cache import (_int8_tag, _publish, cache_dir, calibration_frames, export_onnx,
                                                         fp32_top1, model_key, quantized_openvino)
    from videoclf.stages.classify.backends.int8_nncf import quantize_onnx

    cfg = ctx.cfg
    _, decision = quantized_openvino(src, ctx)
    key = model_key(cfg.backbone, ctx.weights_hash, cfg.crop, "int8", _int8_tag(cfg) + "-ort")
    path = cache_dir(cfg.cache_dir) / (key + ".onnx")
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())
    fp32 = export_onnx(src, ctx)
    frames = calibration_frames(cfg)
    log.info("quantising %s to int8 for onnxruntime with %d ops in float (cached at %s)", cfg.backbone,
             decision["int8_float_ops"], path)

    quantized, ignored = quantize_onnx(fp32, frames, decision["int8_float_op_names"], full_range=cpu_has_vnni())
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    onnx.save(quantized, str(tmp))
    info = {"int8_agreement": round(_onnx_agreement(tmp, frames, fp32_top1(src.model, frames), ctx.threads), 4),
            "int8_calibration_frames": len(frames), "int8_float_ops": len(ignored), "int8_float_op_names": ignored}
    meta_tmp = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps(info, indent=1))
    _publish(meta_tmp, meta)  # the model is published last: its presence means both are complete
    _publish(tmp, path)
    log.info("int8 %s on onnxruntime: %d ops in float, top-1 agreement %.1f %% on the calibration frames",
             cfg.backbone, len(ignored), 100 * info["int8_agreement"])
    return path, info


def _onnx_agreement(path: Path, frames: np.ndarray, reference: np.ndarray, threads: int) -> float:
    session = OnnxBackend(str(path), threads)  # the raw float NCHW model: no u8 prefix
    top1 = np.concatenate([session.run_float(frames[i:i + 8]).argmax(1) for i in range(0, len(frames), 8)])
    return float(np.mean(top1 == reference))
