"""Which decoded frames are classified: at most ``classify.fps`` a second, evenly spaced in
stream time, and with a motion gate only those whose picture changed since the last
classified one (and one per ``heartbeat_s`` of a still scene).

The decision is made on the decoded frame before it is cropped and resized for the model, so
a frame that is not classified costs its decode and nothing else. The decoders call
``FrameFilter.keep`` for each frame in display order and hand the counts of the frames passed
over to the next frame they keep (``Decoded.skipped``/``gated``/``undecoded``): the stage loop
numbers every frame, classified or not, so the label log's frame numbers say which were."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from videoclf.config.sampling import ClassifyOptions, GateOptions, MotionGate

CELL = 16  # the motion gate's cells: 16x16 pixels of the luma, of which two whole rows (at a quarter
# and three quarters of the cell's height) are read: 32 samples a cell, in contiguous runs


def luma_cells(frame: Any) -> np.ndarray:
    """Mean luma of each 16x16 cell (two rows of it), from the decoded frame's own luma plane
    (no conversion for the YUV formats decoders produce); float32, about 0.27 ms for 1080p on
    EPYC-Z3 (benchmarks/motion_gate.py), a quarter of a full 16-sample grid's cost."""
    fmt = frame.format.name
    if fmt.startswith(("yuv", "yuvj", "nv12", "nv21", "gray")):
        p = frame.planes[0]
        y = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]
    else:  # RGB and friends: one small conversion
        y = frame.reformat(format="gray").to_ndarray()
    h, w = (y.shape[0] // CELL) * CELL, (y.shape[1] // CELL) * CELL
    rows = y[CELL // 4:h:CELL, :w].astype(np.uint16)
    rows += y[3 * CELL // 4:h:CELL, :w]
    return rows.reshape(h // CELL, w // CELL, CELL).sum(axis=2, dtype=np.uint16).astype(np.float32) / (2 * CELL)


class MotionCheck:
    """Changed share of the picture against the last classified frame's cells."""

    def __init__(self, gate: MotionGate) -> None:
        self.gate = gate
        self.last: Optional[np.ndarray] = None
        self.last_at: Optional[float] = None
        self.changed = 0.0  # the last frame's changed share (what the threshold was compared with)

    def passes(self, frame: Any, t: float) -> bool:
        cells = luma_cells(frame)
        first = self.last is None or self.last.shape != cells.shape or self.last_at is None
        if not first:
            self.changed = float(np.count_nonzero(np.abs(cells - self.last) > self.gate.delta)) / cells.size
            if self.changed < self.gate.threshold and t - self.last_at < self.gate.heartbeat_s:
                return False
        self.last, self.last_at = cells, t
        return True


class FrameFilter:
    def __init__(self, classify: Optional[ClassifyOptions], gate: Optional[GateOptions],
                 fps_hint: Optional[float] = None) -> None:
        self.period = 1.0 / classify.fps if classify is not None and classify.fps else None
        self.keyframes = bool(classify is not None and classify.keyframes)
        self.motion = MotionCheck(gate.motion) if gate is not None and gate.motion is not None else None
        # a frame up to a quarter of a frame early is on time (timestamps are rounded to the time base)
        self.early = 0.25 / fps_hint if fps_hint else 0.004
        self.interval = 1.0 / fps_hint if fps_hint else 1.0 / 30
        self.next_due: Optional[float] = None
        self.last_t: Optional[float] = None  # the last frame's own time
        self.clock: Optional[float] = None  # stream time that only goes forward (``stream_time``)
        self.skipped = self.gated = self.undecoded = 0

    @property
    def active(self) -> bool:
        """Anything but every frame: the decoders then decode frame by frame, in order."""
        return self.period is not None or self.motion is not None or self.keyframes

    def not_decoded(self, n: int = 1) -> None:
        """``n`` frames passed over without decoding (keyframes only)."""
        self.skipped += n
        self.undecoded += n

    def stream_time(self, frame: Any) -> float:
        """The frame's time on a clock that only goes forward: from the first frame, each frame
        adds its step in stream time. A step back or a frame with no time adds one frame
        interval: a file's next pass, a camera that restarts its timestamps (a looping server
        does every loop) or sends none would otherwise stall the heartbeat."""
        t = frame.time
        if self.clock is None:
            self.clock = 0.0
        elif t is not None and self.last_t is not None and t > self.last_t:
            self.clock += t - self.last_t
        else:
            self.clock += self.interval
        self.last_t = t if t is not None else self.last_t
        return self.clock

    def keep(self, frame: Any) -> bool:
        t = self.stream_time(frame)
        if self.period is not None:
            if self.next_due is None or t - self.next_due > 2 * self.period:
                self.next_due = t  # the start, or after a gap: on the grid from here
            if t + self.early < self.next_due:
                self.skipped += 1
                return False
            self.next_due += self.period
        if self.motion is not None and not self.motion.passes(frame, t):
            self.gated += 1
            return False
        return True

    def take(self) -> tuple[int, int, int]:
        """The frames passed over since the last kept one: (skipped, gated, of the skipped never decoded)."""
        out = (self.skipped, self.gated, self.undecoded)
        self.skipped = self.gated = self.undecoded = 0
        return out
