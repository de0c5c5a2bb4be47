"""The decoder's side of event clips: every demuxed packet of a camera, kept for the sink.

``PacketTap.wrap`` sits between the demuxer and the decoder in the reader thread: it copies
each packet's bytes, pts, dts and keyframe flag into a queue and passes the packet on
unchanged. The stage loop takes the queue's contents (``take``) on every turn, heartbeats
included, and sends them to the sink, which keeps the ring and writes the clips. The queue is
bounded: a loop that falls this far behind loses the oldest packets, counted, and the sink
starts its ring again at the next keyframe.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import replace
from fractions import Fraction
from typing import Any, Iterator, Optional

from videoclf.core.packets import ClipParams, Packet, Packets

QUEUE_MAX = 4096  # packets (minutes of a camera: the loop takes them several times a second)


def clip_params(connection: int, stream: Any, stream_index: int = -1) -> ClipParams:
    """A demuxer stream's codec parameters, as the sink's muxer needs them."""
    cc = stream.codec_context
    rate = stream.average_rate
    return ClipParams(stream_index, connection, cc.name, cc.width, cc.height, cc.pix_fmt,
                      Fraction(stream.time_base), bytes(cc.extradata) if cc.extradata else None,
                      Fraction(rate) if rate else None)


class PacketTap:
    """Thread-safe hand-over of one decoder's packets (reader thread → stage loop)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection = 0
        self.params: Optional[ClipParams] = None  # the current connection's, until taken
        self.queue: collections.deque[Packet] = collections.deque()
        self.lost = 0  # dropped since the last take

    def wrap(self, packets: Iterator[Any], stream: Any) -> Iterator[Any]:
        """``packets`` (one connection's demuxer) passed through, each one recorded."""
        with self.lock:
            self.connection += 1
            self.params = clip_params(self.connection, stream)
            self.queue.clear()  # a stale connection's packets belong to no clip of the new one
            mine = self.connection
        for packet in packets:
            if packet.size:
                record = Packet(packet.pts, packet.dts, bool(packet.is_keyframe), bytes(packet))
                with self.lock:
                    if self.connection != mine:
                        return  # this connection was abandoned: its reader stops at its next frame anyway
                    if len(self.queue) >= QUEUE_MAX:
                        self.queue.popleft()
                        self.lost += 1
                    self.queue.append(record)
            yield packet

    def take(self, stream: int, offset: float) -> list[Any]:
        """What to send now for stream number ``stream``: new codec parameters first, then the
        packets (``offset``: the decoder's stream time minus the camera's pts, as its last frame
        was placed)."""
        with self.lock:
            out: list[Any] = []
            if self.params is not None:
                out.append(replace(self.params, stream=stream))
                self.params = None
            if self.queue or self.lost:
                out.append(Packets(stream, self.connection, offset, tuple(self.queue), self.lost))
                self.queue.clear()
                self.lost = 0
            return out
