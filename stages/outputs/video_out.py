"""Annotated H.264 video: fragmented MP4 files named by wall-clock start, optionally rotated."""
from __future__ import annotations

import logging
import os
import time
from fractions import Fraction
from typing import Any, Optional

import av
import numpy as np

from videoclf.core.errors import ResourceError

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90_000)  # MPEG clock: input timestamps survive to ~11 µs
# empty_moov + a fragment per keyframe: the file is playable however it ends
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
PRESET = "veryfast"  # the encoder is the cost of this output; this keeps 1080p30 real-time on few cores


def stamp(epoch: float) -> str:
    """Local wall-clock time in file names: sorts by time, readable by a guard."""
    return time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(epoch))


def create_new(folder: str, stem: str, ext: str) -> str:
    """Create ``<stem><ext>`` in ``folder`` (``<stem>-1<ext>``, … when taken) and return its path:
    an output file never replaces one an earlier run wrote."""
    for n in range(10_000):
        path = os.path.join(folder, f"{stem}{f'-{n}' if n else ''}{ext}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(os.path.join(folder, stem + ext))


class SegmentWriter:
    """One stream's annotated video, in files named by the wall-clock time of their first frame
    (``<name>_2026-12-06_22-31-07.mp4``), never replacing a file. With ``segment_s`` a new file
    starts every ``segment_s`` seconds: of wall-clock time for a live stream (its stream time
    may jump at a reconnect), of stream time for a file. Each file is a fragmented MP4 with a
    keyframe and a fragment every second, so a writer killed mid-file leaves a file that plays
    up to its last second."""

    def __init__(self, out_dir: str, name: str, size: tuple[int, int], fps: float, segment_s: Optional[float],
                 live: bool = False) -> None:
        self.out_dir, self.name, self.live = out_dir, name, live
        self.width, self.height = size
        self.fps = fps if fps and fps > 0 else 30.0
        self.segment_s = segment_s
        self.container: Any = None
        self.stream: Any = None
        self.files: list[str] = []
        self.frames = 0
        self._t0: Optional[float] = None  # stream time of the current segment's first frame
        self._start = 0.0  # what rotation counts from: wall-clock (live) or stream time
        self._last = -1
        self._last_t: Optional[float] = None

    def _open(self, t: float, epoch: float) -> None:
        path = ""
        try:
            path = create_new(self.out_dir, f"{self.name}_{stamp(epoch)}", ".mp4")
            self.container = av.open(path, "w", format="mp4", container_options=FRAGMENTED)
        except (OSError, av.FFmpegError) as exc:
            raise ResourceError(f"output.dir {self.out_dir}: cannot create {path or self.name + ' video'} "
                                f"({exc})") from exc
        s = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p"
        s.time_base = TIME_BASE
        s.codec_context.time_base = TIME_BASE
        # a keyframe a second: each starts a fragment, the most a killed writer can lose; no
        # B-frames: a fragmented MP4 has no edit list to hide their delay, so times stay the input's
        s.options = {"preset": PRESET, "crf": "23", "g": str(max(round(self.fps), 1)), "bf": "0"}
        self.stream = s
        self.files.append(path)
        # segments start at 0: a player shows them from the start; the name gives the time (one
        # file for a whole file source keeps the source's timestamps)
        self._t0 = t if self.segment_s else 0.0
        self._start = epoch if self.live else t
        self._last = -1

    def write(self, yuv: np.ndarray, t: Optional[float], epoch: Optional[float] = None) -> None:
        """Encode one frame shown at stream time ``t`` seconds (None: one frame period later),
        decoded at ``epoch`` (wall-clock seconds; default now)."""
        if t is None:
            t = 0.0 if self._last_t is None else self._last_t + 1 / self.fps
        epoch = time.time() if epoch is None else epoch
        self._last_t = t
        if self.container is not None and self.segment_s and \
                (epoch if self.live else t) - self._start >= self.segment_s:
            self.close_segment()
        if self.container is not None and self._t0 is not None and t < self._t0:
            self._t0 = t - (self._last + 1) / 90_000  # stream time went back (a reconnect): stay monotonic
        if self.container is None:
            self._open(t, epoch)
        pts = round((t - (self._t0 or 0.0)) * 90_000)
        if pts <= self._last:  # the muxer refuses non-increasing timestamps
            pts = self._last + 1
        self._last = pts
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, TIME_BASE
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close_segment(self) -> None:
        """Flush the encoder and finish the file; the next frame starts a new one."""
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
            self.container = None
