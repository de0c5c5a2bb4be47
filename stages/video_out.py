"""Annotated H.264 MP4 writer with optional rotation into fixed-duration segments."""
from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Any, Optional

import av
import numpy as np

from pipeline.errors import ResourceError

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90_000)  # MPEG clock: input timestamps survive to ~11 µs
PRESET = "veryfast"  # the encoder is the cost of this output; this keeps 1080p30 real-time on few cores


class SegmentWriter:
    """One stream's annotated video: ``<name>.mp4``, or ``<name>_00000.mp4``, ``_00001`` …
    when ``segment_s`` is set (each segment a complete, independently playable file)."""

    def __init__(self, out_dir: str, name: str, size: tuple[int, int], fps: float, segment_s: Optional[float]) -> None:
        self.out_dir, self.name = out_dir, name
        self.width, self.height = size
        self.fps = fps if fps and fps > 0 else 30.0
        self.segment_s = segment_s
        self.container: Any = None
        self.stream: Any = None
        self.index = 0
        self.files: list[str] = []
        self.frames = 0
        self._t0: Optional[float] = None  # stream time of the current segment's first frame
        self._last = -1
        self._last_t: Optional[float] = None

    def _path(self) -> str:
        suffix = f"_{self.index:05d}" if self.segment_s else ""
        return os.path.join(self.out_dir, f"{self.name}{suffix}.mp4")

    def _open(self, t: float) -> None:
        path = self._path()
        try:
            self.container = av.open(path, "w")
        except (OSError, av.FFmpegError) as exc:
            raise ResourceError(f"output.dir {self.out_dir}: cannot create {path} ({exc})") from exc
        s = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p"
        s.time_base = TIME_BASE
        s.codec_context.time_base = TIME_BASE
        s.options = {"preset": PRESET, "crf": "23"}
        self.stream = s
        self.files.append(path)
        # segments start at 0: a player shows them from the start; the name gives the order
        self._t0 = t if self.segment_s else 0.0
        self._last = -1

    def write(self, yuv: np.ndarray, t: Optional[float]) -> None:
        """Encode one frame shown at stream time ``t`` seconds (None: one frame period later)."""
        if t is None:
            t = 0.0 if self._last_t is None else self._last_t + 1 / self.fps
        self._last_t = t
        if self.container is not None and self.segment_s and t - (self._t0 or 0.0) >= self.segment_s:
            self.close_segment()
            self.index += 1
        if self.container is None:
            self._open(t)
        pts = round((t - (self._t0 or 0.0)) * 90_000)
        if pts <= self._last:  # the muxer refuses non-increasing timestamps
            pts = self._last + 1
        self._last = pts
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, TIME_BASE
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close_segment(self) -> None:
        """Flush the encoder and write the index (moov): after this the file is playable."""
        if self.container is None:
            return
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()
            self.container = None

    def close(self) -> None:
        try:
            self.close_segment()
        except (OSError, av.FFmpegError) as exc:
            log.warning("%s: finishing %s failed: %s", self.name, self.files[-1] if self.files else "video", exc)
