"""Keyframes only (``classify.keyframes``) and the fast decode (``decode.fast``).

Keyframes only: the decoder is fed a stream's keyframe packets and nothing else, so a frame
between two keyframes costs its demuxing only. Every video packet is counted as it is read:
in a closed GOP the keyframe is shown first and the GOP holds exactly its own frames, so the
keyframe's place in decode order is its frame number (0, G, 2G, ... for a GOP of G, with or
without B-frames). A decoder may hand a frame out later than its packet went in (frame
threads, a codec's delay), so each frame is matched to its packet by pts, not by order; the
packets passed over in between are reported to the ``FrameFilter`` (``not_decoded``) before
the frame. Packets before the first keyframe are not counted: a full decode cannot show them
either (a camera joined mid-GOP), so both number the first keyframe alike.

The fast decode skips the H.264/HEVC in-loop deblocking filter (FFmpeg's
``skip_loop_filter=all``): about 1.25x cheaper per 1080p frame on one thread, at the price of
block edges the model rarely notices (``videoclf tune`` measures that on the user's footage).
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Iterator, Optional

import av

FAST_OPTIONS = {"skip_loop_filter": "all"}


def set_fast(codec_context: Any, fast: bool) -> None:
    """Ask the codec to skip its loop filter; before its first decode (the options are read when
    it opens). Codecs without a loop filter ignore the option."""
    if fast:
        codec_context.options = {**dict(codec_context.options or {}), **FAST_OPTIONS}


def keyframes(packets: Iterator[Any], stream: Any, filt: Any, damage: Callable[[Exception], None]) -> Iterator[Any]:
    """The decoded keyframes of ``packets`` (one stream's, in decode order, the demuxer's empty
    end packet included), with ``filt.not_decoded(n)`` called for the ``n`` frames passed over
    before each; the frames after the last keyframe are reported at the end."""
    index = -1  # decode-order number of the last packet read (-1: no keyframe yet)
    fed: collections.OrderedDict[Optional[int], int] = collections.OrderedDict()  # pts -> number, not out yet
    last = -1  # number of the last frame handed on
    for packet in packets:
        if packet.size and not packet.is_keyframe:
            index += index >= 0  # counted from the first keyframe on
            continue
        if packet.size:
            index += 1
            fed[packet.pts] = index
        try:
            out = packet.decode()  # the empty end packet drains the decoder
        except av.FFmpegError as exc:
            damage(exc)
            fed.pop(packet.pts, None)
            continue
        for frame in out:
            if frame.time_base is None:
                frame.time_base = stream.time_base
            number = _number(fed, frame.pts)
            if number is None or number <= last:
                continue  # not one of ours (cannot happen with keyframes in, but never number backwards)
            filt.not_decoded(number - last - 1)
            last = number
            yield frame
    if index > last:
        filt.not_decoded(index - last)  # the frames after the last keyframe


def _number(fed: "collections.OrderedDict[Optional[int], int]", pts: Optional[int]) -> Optional[int]:
    """The packet number of a frame with ``pts``; keyframes fed before it that gave no frame
    (a damaged packet) are forgotten. A frame without pts takes the oldest fed number."""
    if pts is None or pts not in fed:
        return fed.popitem(last=False)[1] if fed else None
    while fed:
        key, number = fed.popitem(last=False)
        if key == pts:
            return number
    return None
