"""The hand-written loop: what a competent engineer writes in ~50 lines, one process, no videoclf.

PyAV threaded decode → libswscale resize (shorter side 256, AREA) straight to RGB u8 → numpy
centre crop 224 → OpenVINO with u8 NHWC input (mean/std and the layout change folded into the
graph by the PrePostProcessor), THROUGHPUT hint, an AsyncInferQueue so decode and inference
overlap, softmax top-3 in the callback. Also the two halves of the machine limit, each measured
alone as process CPU time (all threads) per frame: decode-only and model-only.

Usage (a model file videoclf exported: the ONNX in its cache for fp32/bf16, the IR for int8;
`report.json` → model.model_file names it):
    python benchmarks/handwritten.py MODEL_FILE [--precision fp32|bf16|int8] [--clip CLIP] [--frames 600]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}  # int8: the ops kept in float run in f32


def cores() -> int:
    """Cores this process may run on (the affinity mask, which a container or taskset narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    model, flags, ids = "unknown", set(), {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key in ("cpu family", "model") and key not in ids:
                    ids[key] = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    # a virtual machine often names its CPU just "AMD EPYC": family and model tell the generation
    # (AMD family 25 = Zen 3/Zen 4, 26 = Zen 5)
    return {"model": model, "family": ids.get("cpu family"), "model_number": ids.get("model"),
            "cpu_count": os.cpu_count(), "cores": cores(), "isa": {f: f in flags for f in ISA_FLAGS}}


def describe_cpu(info: dict[str, Any]) -> str:
    present = [f for f, ok in info["isa"].items() if ok] or ["none"]
    absent = [f for f, ok in info["isa"].items() if not ok] or ["none"]
    ident = f" (family {info['family']}, model {info['model_number']})" if info.get("family") else ""
    return (f"CPU: {info['model']}{ident}, {info['cores']} cores usable ({info['cpu_count']} online); "
            f"ISA: {' '.join(present)}; absent: {' '.join(absent)}")


@dataclass(frozen=True)
class Geometry:
    width: int  # resize target: shorter side = ``resize``
    height: int
    crop: int

    @classmethod
    def of(cls, src_w: int, src_h: int, crop: int = 224) -> "Geometry":
        """Shorter side to 256 for a 224 crop (torchvision's eval ratio for other crops)."""
        s = round(crop * 256 / 224) / min(src_w, src_h)
        return cls(max(crop, round(src_w * s)), max(crop, round(src_h * s)), crop)

    def prepare(self, frame: Any) -> np.ndarray:
        """Frame → 1×crop×crop×3 u8: one libswscale pass (resize + YUV→RGB), numpy centre crop."""
        rgb = frame.to_ndarray(width=self.width, height=self.height, format="rgb24", interpolation="AREA")
        y, x = (self.height - self.crop) // 2, (self.width - self.crop) // 2
        return np.ascontiguousarray(rgb[None, y:y + self.crop, x:x + self.crop])


def compile_model(model_file: str, precision: str, threads: int = 0) -> Any:
    """The model file (fp32 NCHW, input "input" [N,3,224,224]) at batch 1 with u8 NHWC input;
    one warm-up inference so the first timed frame does not pay for kernel set-up."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    core = ov.Core()
    model = core.read_model(model_file)
    shape = model.input(0).get_partial_shape()
    model.reshape({model.input(0).get_any_name(): [1, 3, shape[2].get_length(), shape[3].get_length()]})
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).mean([m * 255 for m in MEAN]).scale(
        [s * 255 for s in STD])
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    compiled = core.compile_model(ppp.build(), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                      "INFERENCE_NUM_THREADS": threads or cores(),
                                                      "INFERENCE_PRECISION_HINT": HINTS[precision]})
    compiled.create_infer_request().infer({0: np.zeros(compiled.input(0).shape, np.uint8)})
    return compiled


def _top3(results: dict[int, tuple]) -> Any:
    def callback(request: Any, seq: int) -> None:
        logits = request.get_output_tensor(0).data[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argpartition(p, -3)[-3:]
        top = top[np.argsort(-p[top])]
        results[seq] = tuple(zip(top.tolist(), p[top].tolist()))
    return callback


def handwritten_fps(clip: str, compiled: Any, max_frames: int) -> dict[str, Any]:
    """Decode + infer the clip's first ``max_frames`` frames; FPS = frames / wall time from the
    first decode to the last result."""
    import av
    import openvino as ov

    results: dict[int, tuple] = {}
    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue.set_callback(_top3(results))
    crop = compiled.input(0).shape[1]
    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        geom = Geometry.of(stream.codec_context.width, stream.codec_context.height, crop)
        n = 0
        t0 = time.perf_counter()
        for frame in container.decode(stream):
            queue.start_async({0: geom.prepare(frame)}, n)  # blocks only while every request is busy
            n += 1
            if n >= max_frames:
                break
        queue.wait_all()
        wall = time.perf_counter() - t0
    if len(results) != n:
        raise RuntimeError(f"hand-written loop: {len(results)} results for {n} frames")
    return {"fps": n / wall, "frames": n, "wall_s": wall, "jobs": len(queue)}


def decode_core_s_per_frame(clip: str, max_frames: int, crop: int = 224) -> dict[str, Any]:
    """Decode-only pass (thread_type AUTO + the same resize and crop): process CPU s / frame."""
    import av

    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        geom = Geometry.of(stream.codec_context.width, stream.codec_context.height, crop)
        n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
        for frame in container.decode(stream):
            geom.prepare(frame)
            n += 1
            if n >= max_frames:
                break
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"core_s_per_frame": cpu / n, "frames": n, "wall_fps": n / wall}


def infer_core_s_per_frame(compiled: Any, images: int = 200, seed: int = 0) -> dict[str, Any]:
    """Model-only pass: the async queue over random u8 frames after a warm-up; CPU s / image."""
    import openvino as ov

    queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    frames = np.random.default_rng(seed).integers(0, 256, (16, *compiled.input(0).shape), np.uint8)
    for i in range(2 * len(queue)):  # warm-up: every request runs at least once
        queue.start_async({0: frames[i % len(frames)]})
    queue.wait_all()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(images):
        queue.start_async({0: frames[i % len(frames)]})
    queue.wait_all()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"core_s_per_frame": cpu / images, "images": images, "wall_fps": images / wall}


def machine_limit(decode_s: float, infer_s: float, n_cores: int) -> float:
    """Frames per second if every core did nothing but decode and infer, with no overhead."""
    return n_cores / (decode_s + infer_s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_file", help="ONNX (fp32/bf16) or OpenVINO IR (int8) file, fp32 NCHW input 'input'")
    ap.add_argument("--precision", choices=tuple(HINTS), default="fp32")
    ap.add_argument("--clip", default=str(Path(__file__).resolve().parent / "results" / "clip_1080p30_gop30.mp4"))
    ap.add_argument("--frames", type=int, default=600)
    args = ap.parse_args()
    print(describe_cpu(cpu_info()))
    compiled = compile_model(args.model_file, args.precision)
    run = handwritten_fps(args.clip, compiled, args.frames)
    dec = decode_core_s_per_frame(args.clip, args.frames, compiled.input(0).shape[1])
    inf = infer_core_s_per_frame(compiled)
    limit = machine_limit(dec["core_s_per_frame"], inf["core_s_per_frame"], cores())
    print(f"hand-written loop: {run['fps']:.1f} FPS over {run['frames']} frames ({run['jobs']} infer requests)")
    print(f"machine limit: {cores()} cores / ({1e3 * dec['core_s_per_frame']:.2f} ms decode + "
          f"{1e3 * inf['core_s_per_frame']:.2f} ms infer core time per frame) = {limit:.1f} FPS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
