"""The decoder's packet tap for event clips, on a real H.264 file's demuxer."""
from __future__ import annotations

from fractions import Fraction

import av
import pytest

from conftest import make_video
from videoclf.core.packets import ClipParams, Packets
from videoclf.stages.decode import packettap
from videoclf.stages.decode.packettap import PacketTap


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("tap") / "cam.ts", 96, 64, frames=30, fps=10, gop=10)


def test_the_tap_passes_every_packet_on_and_hands_over_the_parameters_then_the_packets(video):
    tap = PacketTap()
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        seen = [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in tap.wrap(c.demux(stream), stream) if p.size]
        extradata = stream.codec_context.extradata
    params, batch = tap.take(3, offset=1.5)
    # the connection's parameters come first, as the demuxer has them
    assert isinstance(params, ClipParams)
    assert (params.stream, params.codec, params.width, params.height, params.pix_fmt, params.time_base) == \
        (3, "h264", 96, 64, "yuv420p", Fraction(1, 90_000))
    assert params.extradata == extradata and params.rate == 10
    # then every packet, in order, with its own bytes, timestamps and keyframe flag
    assert isinstance(batch, Packets) and batch.stream == 3 and batch.offset == 1.5 and batch.lost == 0
    assert [(p.pts, p.dts, p.key, p.data) for p in batch.packets] == seen
    assert sum(p.key for p in batch.packets) == 3
    # and nothing twice
    assert tap.take(3, offset=1.5) == []


def test_a_loop_that_falls_behind_loses_the_oldest_packets_counted(video, monkeypatch):
    monkeypatch.setattr(packettap, "QUEUE_MAX", 10)
    tap = PacketTap()
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        all_pts = [p.pts for p in tap.wrap(c.demux(stream), stream) if p.size]
    _, batch = tap.take(0, offset=0.0)
    assert [p.pts for p in batch.packets] == all_pts[-10:] and batch.lost == len(all_pts) - 10


def test_a_new_connection_drops_the_old_ones_packets_and_sends_its_parameters(video):
    tap = PacketTap()
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        old = tap.wrap(c.demux(stream), stream)
        next(old)
        next(old)  # the first connection's reader took two packets, then the camera went away
        with av.open(str(video)) as c2:
            stream2 = c2.streams.video[0]
            new = tap.wrap(c2.demux(stream2), stream2)
            next(new)
            assert list(old) == []  # the abandoned connection's tap stops at once
            params, batch = tap.take(0, offset=0.0)
    assert params.connection == batch.connection == 2 and len(batch.packets) == 1
