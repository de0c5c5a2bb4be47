"""Text overlay drawn straight onto the luma plane of an I420 frame.

Drawing on Y only (a dark box, light text) needs no colour conversion of the full frame,
which at 1080p would cost more than the text itself; the result is grey text on a dark
panel, readable on any footage."""
from __future__ import annotations

from collections import deque
from datetime import datetime, tzinfo
from typing import Optional, Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
BOX_Y, TEXT_Y = 24, 235  # video-range black and white


def local_time(epoch: float, tz: Optional[tzinfo] = None) -> str:
    """``epoch`` as the date and time a CCTV picture shows, in ``tz`` (None: the system's zone)."""
    return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M:%S")


def overlay_lines(stream: str, pts: Optional[float], fps: float, top: Sequence[tuple[str, float]],
                  local: Optional[str] = None) -> list[str]:
    """The header shows ``local`` (a live frame's date and time) when given, else stream time."""
    when = local if local is not None else "t=" + ("-" if pts is None else f"{pts:9.3f} s")
    return [f"{stream}  {when}  {fps:5.1f} fps"] + [f"{label[:40]}  {score:.2f}" for label, score in top]


def draw_overlay(yuv: np.ndarray, height: int, lines: Sequence[str]) -> None:
    """Draw ``lines`` in the top-left corner of the Y plane (rows 0..height) in place."""
    y_plane = yuv[:height]
    scale = max(height / 720 * 0.7, 0.35)
    thick = max(int(round(scale * 2)), 1)
    (_, th), base = cv2.getTextSize("Ag", FONT, scale, thick)
    step = th + base + 4
    width = max(cv2.getTextSize(t, FONT, scale, thick)[0][0] for t in lines) + 12
    box_h = min(step * len(lines) + 8, height)
    y_plane[:box_h, :min(width, y_plane.shape[1])] = BOX_Y
    for i, text in enumerate(lines):
        cv2.putText(y_plane, text, (6, 4 + th + i * step), FONT, scale, TEXT_Y, thick, cv2.LINE_AA)


class RateMeter:
    """Processed frames per second over the last ``window_s`` (what the viewer calls current
    FPS). Counted over the window, not between first and last tick: Results arrive in
    batches, and a batch's frames land within microseconds of each other."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window = window_s
        self.times: deque[float] = deque()
        self.start: float | None = None

    def tick(self, now: float) -> float:
        if self.start is None:
            self.start = now
        self.times.append(now)
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        elapsed = min(self.window, now - self.start)
        return len(self.times) / elapsed if elapsed >= 0.5 else 0.0


def yuv_to_bgr(yuv: np.ndarray, max_width: int = 0) -> np.ndarray:
    """I420 → BGR (for JPEGs), optionally shrunk first so small previews stay cheap."""
    bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
    if max_width and bgr.shape[1] > max_width:
        h = round(bgr.shape[0] * max_width / bgr.shape[1])
        bgr = cv2.resize(bgr, (max_width, h), interpolation=cv2.INTER_AREA)
    return bgr
