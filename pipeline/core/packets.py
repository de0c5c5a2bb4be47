"""Compressed packets on their way from a camera's decoder to the sink, for event clips.

A decoder whose stream records clips sends, on its display link to the sink, the codec
parameters of each connection (``ClipParams``) and then every packet it demuxes, in batches
(``Packets``). These are the camera's own bytes (no pixels: a 1080p camera is about 0.5 MB/s),
so the sink can cut clips by stream copy, without decoding or encoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional


@dataclass(frozen=True, slots=True)
class ClipParams:
    """One connection's codec parameters: a new connection starts a new ring in the sink."""

    stream: int
    connection: int  # counts up per connection of this decoder
    codec: str  # FFmpeg codec name (h264, hevc, ...)
    width: int
    height: int
    pix_fmt: Optional[str]
    time_base: Fraction  # of the packets' pts and dts
    extradata: Optional[bytes]  # parameter sets (SPS/PPS) from the stream's setup, if any
    rate: Optional[Fraction] = None  # the stream's average frame rate, if known


@dataclass(frozen=True, slots=True)
class Packet:
    pts: Optional[int]  # in the connection's time base
    dts: Optional[int]
    key: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class Packets:
    """The packets a decoder demuxed since its last batch, oldest first."""

    stream: int
    connection: int
    offset: float  # stream time = pts seconds + offset (the decoder's StreamTime, monotonic across reconnects)
    packets: tuple[Packet, ...]
    lost: int = 0  # packets dropped before this batch (the loop fell behind): the ring starts again
