"""Exported-model cache: ONNX exports and int8 quantisations, keyed by what determines them.

Key = backbone / content hash of the weights / input shape / precision (+ for int8: the
calibration clips, frame count and agreement bound), so a new checkpoint, input size or
calibration clip never reuses a stale export. Files are written to a temporary name and
renamed: concurrent runs never read half a model.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from videoclf.core.errors import ConfigError, InputError, ResourceError

log = logging.getLogger(__name__)

MINUTE = 30 * 60 + 1  # calibration frames are picked from the first minute of each clip: plenty
# what an int8 quantisation reached, reported beside the engine (report.json "model")
INT8_DETAILS = ("int8_float_ops", "int8_quantized_ops", "int8_agreement", "int8_calibration_frames", "int8_quantise_s",
                "int8_method")


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


def export_onnx(src: Any, ctx: Any) -> Path:
    """fp32 NCHW ONNX with a dynamic batch axis, exported once per key (``src`` is a
    ``ModelSource``: torch is imported only on a cache miss)."""
    cfg = ctx.cfg
    path = cache_dir(cfg.cache_dir) / (model_key(cfg.backbone, ctx.weights_hash, cfg.crop, "fp32") + ".onnx")
    if path.exists():
        return path
    import torch

    model = src.model
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


def calibration_sources(cfg: Any) -> list[str]:
    c = cfg.calibration
    if not c:
        from videoclf.config.assets import sample_clip

        return [str(sample_clip())]
    return [c] if isinstance(c, str) else list(c)


def calibration_frames(cfg: Any, n: Optional[int] = None) -> np.ndarray:
    """``n`` (default ``cfg.calibration_frames``) normalised float NCHW frames spread evenly over
    the first minute of the calibration videos (each gives its share of the frames taken
    together), prepared exactly as the pipeline prepares them (same libswscale resize and crop)
    and normalised as the engines normalise them."""
    return normalise(cfg, model_frames(cfg, n))


def model_frames(cfg: Any, n: Optional[int] = None) -> np.ndarray:
    """The same frames as ``calibration_frames`` as the engines take them: RGB uint8 NHWC."""
    n = cfg.calibration_frames if n is None else n
    sources = calibration_sources(cfg)
    lengths = [_frame_count(source) for source in sources]
    shares = np.diff(np.round(np.cumsum([0, *lengths]) * min(1.0, n / max(1, sum(lengths))))).astype(int)
    return np.concatenate([_frames_of(cfg, source, max(1, int(share))) for source, share in zip(sources, shares)])


def normalise(cfg: Any, frames: np.ndarray) -> np.ndarray:
    """uint8 NHWC frames → the float NCHW input of the exported model (what NNCF calibrates on)."""
    spec = cfg.spec
    rgb = frames.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((rgb - mean) / std, dtype=np.float32)


def _frame_count(source: str) -> int:
    """Frames in the first minute of ``source``, counted from its packets (nothing decoded)."""
    from videoclf.stages.decode.file import open_video

    container, stream = open_video(source)
    try:
        count = 0
        for packet in container.demux(stream):
            count += packet.size > 0
            if count >= MINUTE:
                break
        return count
    finally:
        container.close()


def _frames_of(cfg: Any, source: str, n: int) -> np.ndarray:
    from videoclf.stages.decode.file import DecodeConfig, open_video, to_model_rgb

    dec = DecodeConfig("calibration", source, cfg.resize_to, cfg.crop)
    container, stream = open_video(source)
    frames: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            frames.append(to_model_rgb(frame, dec).copy())
            if len(frames) >= MINUTE:
                break
    finally:
        container.close()
    if not frames:
        raise InputError(f"model.calibration: {source} has no decodable frames")
    picks = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    return np.stack([frames[i] for i in picks])


def _source_tag(sources: list[str]) -> str:
    """Calibration clips' identity: paths, sizes and mtimes (re-encoding a clip changes the key)."""
    h = hashlib.sha256()
    for source in sources:
        try:
            st = os.stat(source)
        except OSError as exc:
            raise InputError(f"model.calibration: {source}: {exc.strerror or exc}") from None
        h.update(f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:8]


def _int8_tag(cfg: Any) -> str:
    """What an int8 model depends on beyond the weights and shape: calibration clips, frame
    count, bound, and whether its weights use the full 8-bit range (CPUs with VNNI/AMX)."""
    from videoclf.core.cpu import cpu_has_vnni

    bound = "plain" if cfg.weights == "none" else f"a{round(cfg.int8_min_agreement * 1000):d}"
    return (f"nncf-{_source_tag(calibration_sources(cfg))}-{cfg.calibration_frames}f"
            f"-{bound}{'' if cpu_has_vnni() else '-w7'}")


def fp32_top1(model: Any, frames: np.ndarray) -> np.ndarray:
    """The torch fp32 top-1 of ``frames``: the reference int8 is held to."""
    import torch

    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(frames[i:i + 8])).argmax(1).numpy()
                               for i in range(0, len(frames), 8)])


def quantized_openvino(src: Any, ctx: Any) -> tuple[Path, dict[str, Any]]:
    """int8 OpenVINO IR from NNCF's accuracy-controlled quantisation (stages/classify/backends/int8_nncf.py),
    cached as a folder (model.xml, model.bin, int8.json) published with one rename.
    Returns the IR path and what the quantisation reached (ops left in float, agreement)."""
    cfg = ctx.cfg
    sources = calibration_sources(cfg)
    key = model_key(cfg.backbone, ctx.weights_hash, cfg.crop, "int8", _int8_tag(cfg))
    folder = cache_dir(cfg.cache_dir) / key
    if (folder / "int8.json").exists():
        return folder / "model.xml", json.loads((folder / "int8.json").read_text())
    from videoclf.core.contract import announce_slow_step

    # the supervisor waits for this stage as long as the whole step may take (~1-2 s a frame here)
    announce_slow_step(120 + 6 * cfg.calibration_frames,
                       f"quantising {cfg.backbone} to int8 on up to {cfg.calibration_frames} frames")
    try:
        import nncf  # noqa: F401
    except ImportError as exc:
        raise ConfigError("model.precision: int8 needs nncf, not installed (pip install nncf)") from exc
    from videoclf.stages.classify.backends.int8_nncf import quantize

    fp32 = export_onnx(src, ctx)
    frames = calibration_frames(cfg)
    if cfg.weights == "none":
        log.warning("quantising %s (random weights) to int8 on %d frames of %s without accuracy control: a speed "
                    "test (cached at %s)", cfg.backbone, len(frames), ", ".join(sources), folder)
    else:
        log.warning("quantising %s to int8 on %d frames of %s until top-1 agrees with fp32 on >= %.1f %% "
                    "(one-time step, several minutes; cached at %s)", cfg.backbone, len(frames), ", ".join(sources),
                    100 * cfg.int8_min_agreement, folder)
    from videoclf.core.cpu import cpu_has_vnni

    start = time.monotonic()

    if cfg.weights == "none":  # random weights: nothing to keep, plain post-training quantisation
        from videoclf.stages.classify.backends.int8_nncf import quantize_plain

        result = quantize_plain(fp32, frames, full_range=cpu_has_vnni())
    else:
        result = quantize(fp32, frames, fp32_top1(src.model, frames), cfg.int8_min_agreement, ctx.threads,
                          full_range=cpu_has_vnni())
    plain = cfg.weights == "none"
    info = {"int8_agreement": None if plain else round(result.agreement, 4), "int8_calibration_frames": len(frames),
            "int8_method": "plain post-training quantisation (weights: none, a speed test)" if plain
            else f"accuracy control, bound {cfg.int8_min_agreement}",
            "int8_quantized_ops": result.quantized_ops - len(result.float_ops),
            "int8_float_ops": len(result.float_ops), "int8_float_op_names": result.float_ops,
            "int8_quantise_s": round(time.monotonic() - start, 1)}
    info = _publish_ir(folder, result.model, info)
    _log_int8(cfg, info)
    return folder / "model.xml", info


def _publish_ir(folder: Path, model: Any, info: dict[str, Any]) -> dict[str, Any]:
    """Write the IR and its info beside it, published with one rename (another run may win)."""
    import openvino as ov

    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
    (tmp / "int8.json").write_text(json.dumps(info, indent=1))
    try:
        os.replace(tmp, folder)
    except OSError:  # another run published the same key first: use its model
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "int8.json").exists():
            raise
        info = json.loads((folder / "int8.json").read_text())
    return info


def _log_int8(cfg: Any, info: dict[str, Any]) -> None:
    from videoclf.stages.classify.backends.int8_nncf import MAX_REVERTED

    if info["int8_agreement"] is None:
        log.info("int8 %s: %s (%.0f s)", cfg.backbone, info["int8_method"], info["int8_quantise_s"])
        return
    log.info("int8 %s: %d ops kept in float, top-1 agreement %.1f %% on the calibration frames (%.0f s)",
             cfg.backbone, info["int8_float_ops"], 100 * info["int8_agreement"], info["int8_quantise_s"])
    if info["int8_agreement"] < cfg.int8_min_agreement:
        log.warning("int8 %s: %.1f %% agreement on the calibration frames, below model.int8_min_agreement "
                    "%.1f %% (the accuracy control stops at %d ops in float)", cfg.backbone,
                    100 * info["int8_agreement"], 100 * cfg.int8_min_agreement, MAX_REVERTED)
