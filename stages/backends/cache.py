"""Exported-model cache: ONNX exports and int8 quantisations, keyed by what determines them.

Key = backbone / content hash of the weights / input shape / precision (+ calibration
source for int8), so a new checkpoint, input size or calibration clip never reuses a stale
export. Files are written to a temporary name and renamed: concurrent runs never read half
a model.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline.errors import InputError, ResourceError

log = logging.getLogger(__name__)

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "bigbuckbunny_360p.mp4"
CALIBRATION_FRAMES = 64


def cache_dir(configured: Optional[str]) -> Path:
    path = Path(configured or os.environ.get("VIDEOCLF_CACHE") or Path.home() / ".cache" / "videoclf")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResourceError(f"model.cache_dir {path}: cannot create ({exc.strerror or exc})") from exc
    return path


def state_hash(model: Any) -> str:
    """Content hash of every parameter and buffer, so 'imagenet', a checkpoint path and seeded
    random weights are all keyed by what they actually are."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_key(backbone: str, weights_hash: str, crop: int, precision: str, extra: str = "") -> str:
    return f"{backbone}-{weights_hash}-{crop}x{crop}-{precision}{('-' + extra) if extra else ''}"


def _publish(tmp: Path, final: Path) -> Path:
    os.replace(tmp, final)
    return final


def export_onnx(model: Any, ctx: Any) -> Path:
    """fp32 ONNX with a dynamic batch axis, exported once per key."""
    import torch

    cfg = ctx.cfg
    path = cache_dir(cfg.cache_dir) / (model_key(cfg.backbone, ctx.weights_hash, cfg.crop, "fp32") + ".onnx")
    if path.exists():
        return path
    log.info("exporting %s to ONNX (cached at %s)", cfg.backbone, path)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    x = torch.zeros(1, 3, cfg.crop, cfg.crop)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but exports these CNNs in ~2 s where the
        # torch.export one takes far longer and needs more packages
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                          opset_version=17)
    return _publish(tmp, path)


def calibration_source(cfg: Any) -> str:
    return cfg.calibration or str(SAMPLE)


def calibration_frames(cfg: Any, n: int = CALIBRATION_FRAMES) -> np.ndarray:
    """``n`` normalised frames spread over the calibration video, prepared exactly as the
    pipeline prepares them (same libswscale resize and crop, same mean/std)."""
    from stages.decode import DecodeConfig, open_video, to_model_rgb

    source = calibration_source(cfg)
    spec = cfg.spec
    dec = DecodeConfig("calibration", source, cfg.resize_to, cfg.crop)
    container, stream = open_video(source)
    frames: list[np.ndarray] = []
    try:
        for i, frame in enumerate(container.decode(stream)):
            frames.append(to_model_rgb(frame, dec).copy())
            if i >= 30 * 60:  # a minute of video is plenty to pick from
                break
    finally:
        container.close()
    if not frames:
        raise InputError(f"model.calibration: {source} has no decodable frames")
    picks = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    rgb = np.stack([frames[i] for i in picks]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((rgb - mean) / std, dtype=np.float32)


def _source_tag(source: str) -> str:
    """Calibration clip identity: path, size and mtime (re-encoding the clip changes the key)."""
    st = os.stat(source)
    return hashlib.sha256(f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:8]


def quantized_onnx(model: Any, ctx: Any) -> Path:
    """int8 QDQ ONNX from post-training static quantisation on calibration frames, cached.
    Both onnxruntime and OpenVINO run this file with int8 kernels."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg = ctx.cfg
    source = calibration_source(cfg)
    key = model_key(cfg.backbone, ctx.weights_hash, cfg.crop, "int8", _source_tag(source))
    path = cache_dir(cfg.cache_dir) / (key + ".onnx")
    if path.exists():
        return path
    fp32 = export_onnx(model, ctx)
    frames = calibration_frames(cfg)
    log.info("calibrating int8 %s on %d frames of %s (cached at %s)", cfg.backbone, len(frames), source, path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(frames[i:i + 1] for i in range(len(frames)))

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            x = next(self.it, None)
            return None if x is None else {"input": x}

    pre = path.with_suffix(f".{os.getpid()}.pre.onnx")
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        # per-channel weights and QDQ format: the layout both engines fuse into int8 convolutions
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
    return _publish(tmp, path)
