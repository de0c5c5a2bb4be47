"""Decode stage: PyAV with threaded decoding (a file of closed GOPs a GOP per thread,
videoclf.stages.decode.gop; else FFmpeg's frame threads); geometry (resize + crop) done by libswscale.

Cropping the decoder's YUV frame to the square the model sees and resizing it straight to
the model's size is far cheaper than converting the full frame to RGB first, so the decoder
emits crop×crop RGB uint8 frames.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Optional

import av
import av.filter
from av.video.reformatter import VideoReformatter
import cv2
import numpy as np

from videoclf.config.schema import Roi, redact
from videoclf.core.records import DisplayGeom
from videoclf.core.errors import InputError
from videoclf.core.records import Decoded
from videoclf.core.contract import STAGES, StageBase
from videoclf.core.stats import DecoderStats
from videoclf.stages.decode.geometry import fit_geometry, pad_to, placement  # noqa: F401 (fit_geometry: re-exported)
from videoclf.stages.decode.gop import MAX_THREADS, decode_by_gop, decoded_frames, gop_length, read_packets
from videoclf.stages.decode.keyframes import keyframes, set_fast
from videoclf.stages.decode.select import FrameFilter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeConfig:
    name: str
    source: str
    resize: int  # shorter side after resizing
    crop: int  # center crop fed to the model
    roi: Optional[Roi] = None
    threads: int = 0
    loop: bool = False  # start again at the end of the file (soak tests, demos)
    display: Optional[DisplayGeom] = None  # also yield display frames (annotated video, alerts, web)
    lean_threads: int = 0  # the plan's count beside one CPU engine stream (Control.lean_decode); 0: ``threads``
    classify: Any = None  # the stream's ClassifyOptions (rate, keyframes only); None: every frame
    gate: Any = None  # the stream's GateOptions (motion gate)
    fast: bool = False  # skip the loop filter (decode.fast, resolved by the plan)
    zones: tuple = ()  # the stream's Zones: one model input each (an N×crop×crop×3 slot), instead of roi


def open_video(source: str) -> tuple[Any, Any]:
    """Open ``source`` and return (container, its first video stream), or raise InputError."""
    shown = redact(source)
    if "://" not in source:
        if not os.path.exists(source):
            raise InputError(f"{shown}: file not found")
        if os.path.isdir(source):
            raise InputError(f"{shown}: is a directory, not a video file")
        if os.path.getsize(source) == 0:
            raise InputError(f"{shown}: file is empty (0 bytes)")
    try:
        container = av.open(source, mode="r")
    except av.FFmpegError as exc:
        raise InputError(f"{shown}: not a readable video ({exc.strerror or exc})") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{shown}: has no video stream")
    return container, container.streams.video[0]


def probe(source: str) -> dict[str, Any]:
    """Cheap check run by the supervisor before any process starts."""
    container, stream = open_video(source)
    try:
        cc = stream.codec_context
        return {"codec": cc.name, "width": cc.width, "height": cc.height,
                "fps": float(stream.average_rate) if stream.average_rate else None,
                "frames": stream.frames or None}
    finally:
        container.close()


# planar 8-bit YUV formats (chroma x / y subsampling shifts) whose kept square is copied plane
# by plane before scaling; decoders of H.264/HEVC/MJPEG give these. Others go through a filter graph.
_PLANAR_YUV = {"yuv420p": (1, 1), "yuvj420p": (1, 1), "yuv422p": (1, 0), "yuvj422p": (1, 0),
               "yuv444p": (0, 0), "yuvj444p": (0, 0)}


class _ModelInput(threading.local):
    """Per-thread frame → model-input converters (crop, then one libswscale resize + YUV→RGB),
    one per frame geometry; a live camera that changes resolution gets a new one.

    Cropping first means libswscale only reads the pixels the model will see: for a 16:9
    frame the centre square is ~45 % of it, so the resize costs about half as much as
    resizing the whole frame and slicing the crop out afterwards.

    For planar YUV the kept square is first copied into a small frame of its own, then scaled.
    libswscale's AVX2 horizontal scaler reads its source with gather instructions, and a
    gather that misses the cache waits on memory, one line at a time. With several cameras
    on a few cores the decoded frame has often left the cache by the time it is scaled, and
    the scaler then cost about a third of each decoder's CPU time. The copy streams the square in at
    memory speed (~0.5 MB for 1080p at 224, a few µs) and the scaler runs on cached pixels:
    7 cameras of 1080p30 spent 4.4 instead of 5.2 ms per frame in each decoder (EPYC-Z5,
    docs/speed.md). The output is the same as scaling in place; the frame's colour space and
    range tags travel with the copy. Other formats go through an FFmpeg filter graph
    (buffer → crop → scale → rgb24), whose crop only moves plane pointers.

    Every scaler here runs on the decoder's own thread. libswscale would otherwise split each
    frame over a slice thread per core and wait for all of them; beside busy engine threads
    those waits left a 1080p decoder runnable but off the cores, and the cores partly idle
    (efficientnet_lite0/mobilenet_v2 int8 on a 1080p file, EPYC-Z5, docs/speed.md)."""

    def __init__(self) -> None:
        self.graphs: dict[tuple, Any] = {}
        self.squares: dict[tuple, tuple[av.VideoFrame, list[np.ndarray], VideoReformatter]] = {}

    def convert(self, frame: av.VideoFrame, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
        """``box`` of ``frame`` scaled to ``size`` in RGB: AREA down (the anti-aliased resize); a
        small zone or frame scaled up is converted to RGB at its own size and scaled up by
        OpenCV's bilinear resize (area filtering has nothing to average; libswscale's bilinear
        upscale places its samples differently, and the labels of small frames moved with it)."""
        fmt, up = frame.format.name, size[0] > box[2] or size[1] > box[3]
        if fmt in _PLANAR_YUV:
            if up:  # the box widened to even corners, so its chroma samples are the frame's own
                x, y, w, h = box
                x0, y0 = x & ~1, y & ~1
                w0, h0 = min(frame.width - x0, (x + w - x0 + 1) & ~1), min(frame.height - y0, (y + h - y0 + 1) & ~1)
                img = self._copy_then_scale(frame, (x0, y0, w0, h0), (w0, h0), fmt, None)  # RGB at its own size
                return cv2.resize(img[y - y0:y - y0 + h, x - x0:x - x0 + w], size, interpolation=cv2.INTER_LINEAR)
            return self._copy_then_scale(frame, box, size, fmt, "AREA")
        graph = _held(self.graphs, (frame.width, frame.height, fmt, box, size),
                      lambda: _crop_scale_graph(frame, box, size, "bilinear" if up else "area"))
        graph.push(frame)
        return graph.pull().to_ndarray()

    def _copy_then_scale(self, frame: av.VideoFrame, box: tuple[int, int, int, int], size: tuple[int, int],
                         fmt: str, interpolation: Optional[str]) -> np.ndarray:
        x, y, w, h = box
        square, planes, scaler = _held(self.squares, (w, h, fmt), lambda: _square(w, h, fmt))
        xs, ys = _PLANAR_YUV[fmt]
        for i, (src, out) in enumerate(zip(frame.planes, planes)):
            px, py = (x, y) if i == 0 else (x >> xs, y >> ys)  # the crop filter's chroma offsets
            rows, cols = out.shape
            np.copyto(out, np.frombuffer(src, np.uint8).reshape(-1, src.line_size)[py:py + rows, px:px + cols])
        square.colorspace, square.color_range = frame.colorspace, frame.color_range
        return scaler.reformat(square, size[0], size[1], "rgb24", interpolation=interpolation, threads=1).to_ndarray()


def _held(cache: dict[tuple, Any], key: tuple, make: Any) -> Any:
    """``cache[key]``, made on first use; geometries come and go (resolution changes): keep a few."""
    item = cache.get(key)
    if item is None:
        if len(cache) >= 8:
            cache.clear()
        item = cache[key] = make()
    return item


def _square(w: int, h: int, fmt: str) -> tuple[av.VideoFrame, list[np.ndarray], VideoReformatter]:
    """A w x h frame to copy the kept square into, numpy views of its planes, and its scaler."""
    square = av.VideoFrame(w, h, fmt)
    planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:p.height, :p.width] for p in square.planes]
    return square, planes, VideoReformatter()


def _crop_scale_graph(frame: av.VideoFrame, box: tuple[int, int, int, int], size: Any, flags: str = "area") -> Any:
    x, y, w, h = box
    ow, oh = (size, size) if isinstance(size, int) else size
    graph = av.filter.Graph()
    graph.threads = 1  # stages are sized to the cores already; no extra slice threads
    chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                              time_base=frame.time_base or Fraction(1, 90_000)),
             graph.add("crop", f"w={w}:h={h}:x={x}:y={y}:exact=1"),
             # AREA: the anti-aliased downscale (what torchvision's eval resize approximates)
             graph.add("scale", f"w={ow}:h={oh}:flags={flags}"),
             graph.add("format", "rgb24"),
             graph.add("buffersink")]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    graph.configure()
    return graph


_MODEL_INPUT = _ModelInput()


def crop_box(width: int, height: int, cfg: DecodeConfig) -> tuple[tuple[int, int, int, int], float]:
    """The part of the source frame that becomes the model input (``cfg.roi``'s, see
    videoclf.stages.decode.geometry), and the scale that brings its shorter side to ``resize``."""
    x, y, w, h, s = fit_geometry(width, height, cfg.roi, cfg.resize, cfg.name)
    return placement(width, height, cfg.roi, cfg.resize, cfg.crop, cfg.name).box, s


def to_model_rgb(frame: av.VideoFrame, cfg: DecodeConfig) -> np.ndarray:
    """Frame → crop×crop RGB uint8: crop the source region, then one libswscale pass (resize +
    YUV→RGB) straight to the model size. With zones: N×crop×crop×3, one input per zone, in
    the config's order."""
    if cfg.zones:
        return np.stack([_model_input(frame, cfg, z, f"streams.{cfg.name}.zones.{z.name}") for z in cfg.zones])
    return _model_input(frame, cfg, cfg.roi, cfg.name)


def _model_input(frame: av.VideoFrame, cfg: DecodeConfig, roi: Optional[Roi], key: str) -> np.ndarray:
    p = placement(frame.width, frame.height, roi, cfg.resize, cfg.crop, key)
    img = _MODEL_INPUT.convert(frame, p.box, p.size)  # a small zone too: never the whole frame in RGB
    if p.size != (cfg.crop, cfg.crop):  # fit: pad
        img = pad_to(img, cfg.crop, p.at)
    # phone videos store pixels sideways plus a display matrix: classify the upright picture.
    # The input is a centred square, so rotating it equals cropping the rotated frame.
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.rot90(img, turns) if turns else img


class DisplayTap:
    """Whole frames for the display path, as I420 at the display size: every frame for the
    annotated video, else a preview every ``preview_interval_s`` (web view, alert snapshots).
    A frame whose aspect differs from the display size (a live camera that could not be
    probed, a resolution change) is letterboxed, never stretched."""

    def __init__(self, geom: Optional[DisplayGeom]) -> None:
        self.geom = geom
        self.scaler = VideoReformatter()
        self._next_preview = 0.0

    def take(self, frame: av.VideoFrame) -> Optional[np.ndarray]:
        g = self.geom
        if g is None:
            return None
        if not g.every_frame:
            now = time.monotonic()
            if now < self._next_preview:
                return None
            self._next_preview = now + g.preview_interval_s
        if frame.format.name == "yuv420p" and (frame.width, frame.height) == (g.width, g.height):
            return frame.to_ndarray()  # already what the encoder wants: no scaling pass
        s = min(g.width / frame.width, g.height / frame.height)
        w, h = min(g.width, 2 * round(frame.width * s / 2)), min(g.height, 2 * round(frame.height * s / 2))
        if abs(w - g.width) <= 2 and abs(h - g.height) <= 2:  # same aspect (rounding aside)
            w, h = g.width, g.height
        img = self.scaler.reformat(frame, w, h, "yuv420p", interpolation="AREA", threads=1).to_ndarray()
        return img if (w, h) == (g.width, g.height) else letterbox_i420(img, w, h, g.width, g.height)


def letterbox_i420(img: np.ndarray, w: int, h: int, out_w: int, out_h: int) -> np.ndarray:
    """Centre a w×h I420 image (planes stacked as PyAV returns them) on a black out_w×out_h one."""
    out = np.empty((out_h * 3 // 2, out_w), np.uint8)
    out[:out_h] = 16  # black in limited-range YUV
    out[out_h:] = 128
    x, y = (out_w - w) // 2 // 2 * 2, (out_h - h) // 2 // 2 * 2  # even, so chroma lines up
    out[y:y + h, x:x + w] = img[:h]
    # U then V planes: each (h/2)×(w/2), stored row-major inside rows of width w (resp. out_w)
    for k in range(2):
        src = img[h + k * h // 4: h + (k + 1) * h // 4].reshape(h // 2, w // 2)
        dst = out[out_h + k * out_h // 4: out_h + (k + 1) * out_h // 4].reshape(out_h // 2, out_w // 2)
        dst[y // 2: y // 2 + h // 2, x // 2: x // 2 + w // 2] = src
    return out


@STAGES.register("decode.file")
class FileDecoder(StageBase):
    """Lossless file decoding. Corrupt packets are skipped and counted, never replaced."""

    def __init__(self, cfg: DecodeConfig) -> None:
        self.cfg = cfg
        self.container: Any = None
        self.errors = 0
        self.last_error = ""
        self.info: dict[str, Any] = {}
        self.passes = 1
        self.tap = DisplayTap(cfg.display)
        self.filter = FrameFilter(cfg.classify, cfg.gate)  # with the file's frame rate once it is open
        self.gop: Optional[int] = None  # GOP length when each thread decodes whole GOPs; 0: FFmpeg's frame threads
        self._damage_lock = threading.Lock()  # GOP threads report damage too

    def _open(self) -> tuple[Any, Any]:
        container, stream = open_video(self.cfg.source)
        set_fast(stream.codec_context, self.cfg.fast)
        return container, stream

    def setup(self) -> None:
        self.container, stream = self._open()
        stream.thread_type = "AUTO"
        if self.cfg.threads:
            stream.codec_context.thread_count = self.cfg.threads
        self.stream = stream
        self.info = {"codec": stream.codec_context.name, "width": stream.codec_context.width,
                     "height": stream.codec_context.height,
                     "fps": float(stream.average_rate) if stream.average_rate else None,
                     "threads": stream.codec_context.thread_count, "fast_decode": self.cfg.fast}
        self.filter = FrameFilter(self.cfg.classify, self.cfg.gate, self.info["fps"])

    def lean(self) -> None:
        """The plan's lean thread count, before the first decode: beside an engine that
        spreads each inference over every core, FFmpeg's frame threading (about 30 % more CPU
        per 1080p frame than one thread) costs more than it gains (videoclf.plan.budget)."""
        if self.cfg.lean_threads and self.cfg.lean_threads != self.cfg.threads:
            self.stream.codec_context.thread_count = self.cfg.lean_threads
            self.info["threads"] = self.stream.codec_context.thread_count

    def _plan_threads(self) -> None:
        """Several threads: a GOP each when the file's GOPs are closed (videoclf.stages.decode.gop), else
        FFmpeg's frame threads. Decided at the first decode, after ``lean``."""
        threads = self.stream.codec_context.thread_count
        local = "://" not in self.cfg.source  # each GOP thread reads the whole file: not over a network
        # frames chosen by rate or gate are chosen in order, on the decoder's own thread
        length = gop_length(self.container, self.stream) if threads > 1 and local and not self.filter.active else None
        self.gop = length or 0
        if self.gop:
            self.info["threads"] = min(threads, MAX_THREADS)
        self.info["threads_by"] = "gop" if self.gop else "frame"

    def _damage(self, exc: Exception) -> None:
        with self._damage_lock:
            self.errors += 1
            self.last_error = str(exc)
        if self.errors <= 3:
            log.warning("%s: skipped undecodable data (%s)", self.cfg.name, exc)

    def frames(self) -> Iterator[Decoded]:
        offset = 0.0  # a looped file keeps its timestamps increasing across passes
        while True:
            last = None
            for d in self._one_pass():
                last = d.pts
                yield d if d.pts is None or not offset else d._replace(pts=d.pts + offset)
            if not self.cfg.loop or last is None:  # nothing decodable in a pass: do not spin
                return
            offset += last + (1.0 / self.info["fps"] if self.info.get("fps") else 0.0)
            self.container.seek(0)
            self.passes += 1

    def _one_pass(self) -> Iterator[Decoded]:
        if self.gop is None:
            self._plan_threads()
        if self.gop:
            for array, t, display in self._gop_pass():
                yield Decoded(array, t, display)
            return
        filt = self.filter if self.filter.active else None
        if filt is not None and filt.keyframes:  # the others are not even decoded
            frames = keyframes(read_packets(self.container, self.stream, self._damage), self.stream, filt, self._damage)
        else:
            frames = decoded_frames(self.container, self.stream, self._damage)
        for frame in frames:
            if filt is None:
                yield Decoded(to_model_rgb(frame, self.cfg), frame.time, self.tap.take(frame))
            elif filt.keep(frame):  # a frame passed over costs its decode only
                skipped, gated, undecoded = filt.take()
                yield Decoded(to_model_rgb(frame, self.cfg), frame.time, self.tap.take(frame), skipped=skipped,
                              gated=gated, undecoded=undecoded)

    def _gop_pass(self) -> Iterator[tuple[np.ndarray, Optional[float], Optional[np.ndarray]]]:
        def convert() -> Any:
            tap = DisplayTap(self.cfg.display)  # each thread its own scaler (and preview clock)
            return lambda frame: (to_model_rgb(frame, self.cfg), frame.time, tap.take(frame))

        g = self.cfg.display
        frame_bytes = self.cfg.crop ** 2 * 3 * max(1, len(self.cfg.zones)) + (g.width * g.height * 3 // 2 if g and g.every_frame else 0)
        yield from decode_by_gop(self._open, self.info["threads"], convert, self.gop,
                                 frame_bytes, self._damage)

    def passed_at_end(self) -> tuple[int, int, int]:
        """Frames passed over after the last one yielded: (skipped, gated, never decoded)."""
        return self.filter.take()

    def stats(self) -> DecoderStats:
        return DecoderStats(name=self.cfg.name, source=dict(self.info), decode_errors=self.errors,
                            last_error=self.last_error, passes=self.passes)

    def teardown(self) -> None:
        if self.container is not None:
            self.container.close()


def decode_cost(source: str, resize: int, crop: int, roi: Any = None, frames: int = 24,
                threads: int = 1, name: str = "cost") -> float:
    """CPU seconds spent on a frame of the file ``source``: decoding it and making the model
    input, averaged over its first ``frames`` (about 0.07 s for 1080p H.264 on one thread).
    ``threads`` FFmpeg threads (0: FFmpeg's choice). On one thread only this thread's time
    counts, so other work in the process does not inflate it; on more, the whole process's.
    ``name``: the stream's, for errors (a zone outside the frame). ``roi``: a stream's roi, or its zones."""
    zones = tuple(roi) if isinstance(roi, (tuple, list)) else ()
    dec = FileDecoder(DecodeConfig(name, source, resize, crop, None if zones else roi, threads=threads, zones=zones))
    clock = time.thread_time if threads == 1 else time.process_time
    dec.setup()
    passes = dec.frames()
    try:
        n, t0 = 0, clock()
        for _ in passes:
            n += 1
            if n >= frames:
                break
        return (clock() - t0) / n if n else 0.0
    finally:
        passes.close()  # ends any decode threads before the container closes
        dec.teardown()
