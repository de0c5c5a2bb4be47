"""Clips for the frame-choice tests (rate, motion gate), encoded with PyAV: a still scene (one
picture of the shipped sample, so the encoder's flicker at each keyframe is real) and a
square that jumps to a new place at given frames over that still picture."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional

import av
import numpy as np

from conftest import SAMPLE

SQUARE = 48  # the jumping square's side in pixels: 9+ cells of 16x16 at each place


def still_picture(width: int = 320, height: int = 180, index: int = 100) -> np.ndarray:
    """Frame ``index`` of the shipped sample, scaled: real texture, so the encoder has work to do."""
    with av.open(str(SAMPLE)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i == index:
                return frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    raise ValueError(f"{SAMPLE} has fewer than {index + 1} frames")


def square_at(picture: np.ndarray, place: int) -> np.ndarray:
    """``picture`` with a white square at the ``place``-th of a fixed walk of places, each far
    from the one before."""
    h, w = picture.shape[:2]
    cols, rows = (w - SQUARE) // SQUARE, (h - SQUARE) // SQUARE
    k = (place * 7) % (cols * rows)  # 7 is prime to the grid sizes used: the walk visits far places
    x, y = (k % cols) * SQUARE + 5, (k // cols) * SQUARE + 3  # off the 16 px grid on purpose
    out = picture.copy()
    out[y:y + SQUARE, x:x + SQUARE] = 255
    return out


def encode(path: Path, pictures: Iterable[np.ndarray], fps: int = 25, gop: Optional[int] = None,
           crf: int = 23) -> Path:
    """H.264 (no B-frames) of ``pictures`` at ``fps``; ``gop``: a keyframe every ``gop`` frames."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps, 1))
        s.pix_fmt = "yuv420p"
        s.options = {"g": str(gop or fps * 10), "bf": "0", "crf": str(crf)}
        for i, img in enumerate(pictures):
            if i == 0:
                s.width, s.height = img.shape[1], img.shape[0]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def still_clip(path: Path, seconds: float = 10, fps: int = 25, crf: int = 35) -> Path:
    """One picture for ``seconds``, a keyframe every second (crf 35: visible flicker at each)."""
    picture = still_picture()
    return encode(path, (picture for _ in range(round(seconds * fps))), fps, gop=fps, crf=crf)


def jumping_clip(path: Path, moves: list[int], frames: int, fps: int = 25) -> Path:
    """The square jumps to a new place at each frame in ``moves`` (and stays put between)."""
    picture = still_picture()
    at = set(moves)
    places = np.cumsum([i in at for i in range(frames)])
    return encode(path, (square_at(picture, int(p)) for p in places), fps, gop=fps)


def heartbeat_model(moves: list[int], frames: int, fps: int, heartbeat_s: float) -> list[int]:
    """The frames a motion gate must classify: the first, every frame the picture changed at,
    and one each ``heartbeat_s`` since the last classified frame when nothing changed."""
    kept, last = [], None
    for i in range(frames):
        if last is None or i in moves or (i - last) / fps >= heartbeat_s:
            kept.append(i)
            last = i
    return kept
