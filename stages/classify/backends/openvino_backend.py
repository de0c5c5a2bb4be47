"""OpenVINO on CPU: fp32 or bf16 (AMX/AVX-512 BF16) from the ONNX export; int8 from NNCF's
accuracy-controlled quantisation (int8 kernels where they keep the top-1, the rest in fp32).

The model takes the decoder's uint8 NHWC frames: ``PrePostProcessor`` folds the conversion to
float, mean/std and the layout change into the graph, where the CPU plugin fuses them into
the first convolution. Inference is asynchronous: several infer requests in flight on the
engine's own streams (``PERFORMANCE_HINT: THROUGHPUT``), so the classifier never idles while
it gathers the next batch. A single frame is handed over without a copy (an ``ov.Tensor``
over the shared-memory slot, which stays held until its request completes). How many streams
and which batch size are fastest depends on the model and the CPU (batch 1 beats batch 8 for
the depthwise nets on some CPUs): they are measured once and cached beside the model file.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Hashable, NamedTuple, Optional

import numpy as np

from videoclf.core.cpu import cpu_has_bf16, cpu_tag, isa_cap
from videoclf.core.errors import ConfigError
from videoclf.core.threads import EngineThreads

log = logging.getLogger(__name__)

BATCHES = (1, 2, 4, 8)  # batch sizes tried when max_batch is auto
MEASURE_S = 0.4  # seconds of inference per (streams, batch) candidate
WITHIN = 0.03  # the smallest batch within 3 % of the fastest wins: lower latency, same speed


def with_u8_input(model: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """``model`` (float NCHW input) taking uint8 NHWC RGB instead, normalised inside."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    inp.model().set_layout(ov.Layout("NCHW"))
    inp.preprocess().convert_element_type(ov.Type.f32).mean([m * 255.0 for m in mean]).scale(
        [s * 255.0 for s in std])
    return ppp.build()


class Input(NamedTuple):
    """What the engine's graph is given: crop×crop×3 uint8 frames, normalised inside by mean/std."""

    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class OpenVinoBackend:
    def __init__(self, path: str, precision: str, threads: int | EngineThreads, inp: Input,
                 max_batch: Optional[int] = None, extra: Optional[dict[str, Any]] = None) -> None:
        """``threads``: the plan's engine threads (a bare count: that many, streams measured,
        no core left to anyone)."""
        import openvino as ov

        plan_threads = threads if isinstance(threads, EngineThreads) else EngineThreads(threads=threads)
        threads = plan_threads.threads
        self.ov = ov
        self.core = ov.Core()
        self.path, self.precision, self.threads, self.crop = path, precision, threads, inp.crop
        # int8: the ops kept in float run in fp32, as the accuracy control measured them (bf16 there
        # costs about two points of agreement)
        self.hint = {"bf16": "bf16", "fp32": "f32", "int8": "f32"}[precision]
        self.model = with_u8_input(self.core.read_model(path), inp.mean, inp.std)
        self.fixed_streams = plan_threads.streams
        self.plan = plan = self._plan(max_batch)
        why: dict[str, Any] = {}
        if plan_threads.spare_core:
            plan, why = self._spare_core(plan, max_batch, plan_threads)
            self.plan = plan
        self.max_batch, self.streams = plan["batch"], plan["streams"]
        self._compile(self.streams)
        self.details = {"model_file": path, "engine_version": ov.get_version(), "threads": self.threads, **why,
                        "streams": self.streams, "infer_requests": self.depth, "batch": self.max_batch,
                        "batch_chosen_by": plan["by"], **(extra or {})}

    def _spare_core(self, plan: dict[str, Any], max_batch: Optional[int],
                    plan_threads: EngineThreads) -> tuple[dict[str, Any], dict[str, Any]]:
        """Beside the decoder of a large file (the plan's ``spare_core``): whether the engine
        leaves it a core (then it runs on ``threads - 1``), by the plan's rule: always on one
        stream, by ``SplitRule.predict`` on several."""
        threads, rule = plan_threads.threads, plan_threads.split
        if plan["streams"] == 1:
            # One stream spreads each inference over all its threads, and they wait for each
            # other at every layer: when a decoder takes a core from one of them, the rest
            # stall. Beside the decoders, one core fewer for the engine and one FFmpeg thread
            # per file decoder (the plan's lean count) gave 1.05-1.15x the FPS on a
            # 1080p file on 2 cores (docs/speed.md).
            self.threads = threads - 1
            return self._plan(max_batch), {"threads_reason": f"one engine stream: {threads - 1} of {threads} "
                                                             "threads, a core left to the decoders"}
        if self.fixed_streams or rule is None or "images_per_s" not in plan:
            return plan, {}
        decode_s = rule.decode_s
        # Several streams: each runs alone on its threads, so a preempted one stalls nobody,
        # but the decoder then needs frame threads, and a frame costs it more. Which way is
        # faster depends on what a frame costs to decode against what it costs to infer.
        self.threads = threads - 1
        lean = self._plan(max_batch)
        alone, shared = max(lean["images_per_s"].values()), max(plan["images_per_s"].values())
        way = rule.predict(alone, shared)
        facts = {"decode_ms_per_frame": round(1e3 * decode_s, 2), "engine_threads": {"split": threads - 1, "shared": threads},
                 "engine_images_per_s": {"split": alone, "shared": shared},
                 "predicted_fps": {"split": round(way.split_fps, 1), "shared": round(way.shared_fps, 1)}}
        costs = (f"{1e3 * decode_s:.1f} core-ms to decode a frame, {1e3 / alone:.1f} to infer it on "
                 f"{threads - 1} thread{'s' if threads > 2 else ''}")
        if way.split:
            return lean, {"threads_reason": f"{costs}: a core left to the decoder predicts {way.split_fps:.0f} FPS, "
                                            f"sharing every core {way.shared_fps:.0f}", "core_split": facts}
        self.threads = threads
        return plan, {"threads_reason": f"{costs}: sharing every core predicts {way.shared_fps:.0f} FPS, a core "
                                        f"left to the decoder {way.split_fps:.0f}", "core_split": facts}

    # -- setup --------------------------------------------------------------------------------
    def _compile(self, streams: int) -> None:
        props = {"INFERENCE_PRECISION_HINT": self.hint, "INFERENCE_NUM_THREADS": self.threads,
                 "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
        self.compiled = self.core.compile_model(self.model, "CPU", props)
        # at least two requests: one is gathered and queued while the other runs, even on one stream
        n = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(max(2, n))]
        self.depth = len(self.requests)
        self._free = deque(self.requests)
        self._busy: deque[tuple[Any, Hashable, Any]] = deque()

    def _plan(self, max_batch: Optional[int]) -> dict[str, Any]:
        """Streams and batch size: given, cached, or measured now and cached."""
        if max_batch is not None:
            return {"batch": max_batch, "streams": self.fixed_streams or max(1, min(2, self.threads)), "by": "config"}
        fixed = f"-s{self.fixed_streams}" if self.fixed_streams else ""
        key = f"{self.precision}-t{self.threads}{fixed}-{cpu_tag()}-ov{self.ov.get_version().split('-')[0]}"
        cache = Path(self.path).with_name(Path(self.path).name + f".{key}.plan.json")
        if cache.exists():
            try:
                return {**json.loads(cache.read_text()), "by": f"measured (cached in {cache.name})"}
            except (OSError, ValueError):
                pass
        plan = self._measure()
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(plan, indent=1))
            os.replace(tmp, cache)
        except OSError as exc:
            log.warning("cannot cache the batch measurement at %s: %s", cache, exc)
        return {**plan, "by": "measured now"}

    def _measure(self) -> dict[str, Any]:
        """Images/s of each (streams, batch) on random frames; the fastest, smallest batch first."""
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (max(BATCHES), self.crop, self.crop, 3), dtype=np.uint8)
        results: dict[str, float] = {}
        for streams in [self.fixed_streams] if self.fixed_streams else sorted({1, max(1, min(2, self.threads))}):
            self._compile(streams)
            for b in BATCHES:
                batch = frames[:b]
                for _ in range(self.depth):  # warm-up: the first inference of a shape prepares kernels
                    self.submit([batch], None, stacked=True)
                self.drain()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < MEASURE_S:
                    self.submit([batch], None, stacked=True)
                    n += b
                    if not self._free:
                        self.collect(True)
                self.drain()
                results[f"{streams}x{b}"] = n / (time.perf_counter() - t0)
        best = max(results.values())
        pick = min((k for k, v in results.items() if v >= best * (1 - WITHIN)),
                   key=lambda k: (int(k.split("x")[1]), -results[k]))
        streams, batch = (int(x) for x in pick.split("x"))
        log.info("batch measurement (images/s by streams x batch): %s; using %s",
                 ", ".join(f"{k} {v:.0f}" for k, v in results.items()), pick)
        return {"streams": streams, "batch": batch, "images_per_s": {k: round(v, 1) for k, v in results.items()}}

    # -- inference ----------------------------------------------------------------------------
    def submit(self, frames: list[np.ndarray], tag: Hashable, stacked: bool = False) -> None:
        """Start one batch: ``frames`` are HWC uint8 views (or one NHWC array when ``stacked``).
        A lone frame is not copied: its memory must stay valid until ``collect`` returns it."""
        if not self._free:
            raise RuntimeError("submit with every infer request busy: collect first")
        req = self._free.popleft()
        if stacked:
            batch = np.ascontiguousarray(frames[0])
        elif len(frames) == 1:
            batch = frames[0][None]
        else:
            batch = np.stack(frames)
        req.set_input_tensor(self.ov.Tensor(batch, shared_memory=True))
        req.start_async()
        self._busy.append((req, tag, batch))

    @property
    def full(self) -> bool:
        return not self._free

    def collect(self, block: bool) -> list[tuple[Hashable, np.ndarray]]:
        """Finished batches in submission order (``block``: wait for the oldest first)."""
        out = []
        if block and self._busy:
            self._busy[0][0].wait()
        while self._busy:
            req, tag, _ = self._busy[0]
            if not req.wait_for(0):
                break
            self._busy.popleft()
            # copy: the output tensor's memory is reused by the request's next inference
            out.append((tag, req.get_output_tensor(0).data.copy()))
            self._free.append(req)
        return out

    def drain(self) -> list[tuple[Hashable, np.ndarray]]:
        out = []
        while self._busy:
            out += self.collect(True)
        return out

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Synchronous: one uint8 NHWC batch → logits (nothing else may be in flight)."""
        if self._busy:
            raise RuntimeError("run() while batches are in flight: collect them first")
        req = self._free[0]
        req.infer({0: np.ascontiguousarray(batch, np.uint8)})
        return req.get_output_tensor(0).data.copy()


def load(src: Any, ctx: Any) -> OpenVinoBackend:
    from videoclf.stages.classify.backends.cache import INT8_DETAILS, export_onnx, quantized_openvino

    cfg = ctx.cfg
    if ctx.precision == "bf16" and not cpu_has_bf16() and isa_cap():
        # the plugin sees the CPU's bf16 flags but oneDNN may not use them: it crashes in inference
        raise ConfigError(f"model.precision: bf16 with OpenVINO cannot run under ONEDNN_MAX_CPU_ISA={isa_cap()}, "
                          "which rules out the CPU's bf16 instructions; use fp32 or auto")
    spec = cfg.spec
    batch = None if cfg.max_batch == "auto" else int(cfg.max_batch)
    engine = ctx.engine_threads
    args = (Input(cfg.crop, spec.mean, spec.std), batch)
    if ctx.precision == "int8":
        if ctx.int8_model:
            info = json.loads((Path(ctx.int8_model).parent / "int8.json").read_text())
            path = Path(ctx.int8_model)
        else:
            path, info = quantized_openvino(src, ctx)
        return OpenVinoBackend(str(path), "int8", engine, *args, {k: info[k] for k in INT8_DETAILS if k in info})
    return OpenVinoBackend(str(export_onnx(src, ctx)), ctx.precision, engine, *args)
