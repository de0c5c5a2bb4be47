"""The packet ring behind event clips: what it keeps, from where, and when it starts again."""
from __future__ import annotations

from fractions import Fraction

from videoclf.core.packets import ClipParams, Packet, Packets
from videoclf.stages.outputs.clipring import PacketRing

TB = Fraction(1, 90_000)


def params(connection: int = 1, width: int = 640) -> ClipParams:
    return ClipParams(0, connection, "h264", width, 360, "yuv420p", TB, b"\x00\x00\x00\x01\x67", Fraction(10))


def camera(start_s: float, seconds: float, fps: int = 10, gop: int = 10, first_key: int = 0) -> list[Packet]:
    """A camera's packets: ``fps`` a second, a keyframe every ``gop`` (the first at ``first_key``)."""
    out = []
    for i in range(int(seconds * fps)):
        ts = round((start_s + i / fps) * 90_000)
        out.append(Packet(ts, ts, i >= first_key and (i - first_key) % gop == 0, bytes([i % 256]) * 10))
    return out


def feed(ring: PacketRing, packets: list[Packet], connection: int = 1, offset: float = 0.0) -> None:
    for p in packets:  # one batch per packet: the ring trims after every batch, as it runs
        ring.add(Packets(0, connection, offset, (p,)))


def test_the_ring_keeps_back_to_a_keyframe_at_least_keep_s_old_and_no_further():
    # given a 10 FPS camera with a keyframe a second, 30 s of it, and a ring that keeps 4.5 s
    ring = PacketRing(keep_s=4.5)
    ring.reset(params())
    feed(ring, camera(0.0, 30.0))
    # then it starts at a keyframe, at least 4.5 s before the newest packet (29.9 s) ...
    first_t, first = ring.items[0]
    assert first.key
    assert first_t <= 29.9 - 4.5
    # ... but not a whole GOP more than needed: the next keyframe would be too young
    assert first_t == 25.0
    assert len(ring.items) == 50
    # and a clip 3 s back from the newest packet starts at the keyframe at or before 26.9 s
    assert ring.since(26.9)[0][0] == 26.0


def test_no_packet_is_kept_before_the_first_keyframe():
    # given a camera joined mid-GOP: its first keyframe is its 7th packet
    ring = PacketRing(keep_s=5.0)
    ring.reset(params())
    feed(ring, camera(100.0, 0.6, first_key=7))
    # then nothing is kept yet, and no clip can start
    assert not ring.items
    assert ring.since(100.5) == []
    # when the keyframe comes, the ring starts there
    feed(ring, camera(100.0, 1.0, first_key=7)[6:])
    assert ring.items[0][1].key and ring.items[0][0] == 100.7


def test_a_reconnect_with_new_parameters_starts_a_new_ring():
    # given 10 s of a first connection
    ring = PacketRing(keep_s=5.0)
    ring.reset(params(1))
    feed(ring, camera(0.0, 10.0))
    assert ring.items
    # when the camera comes back with another size (its clock starting again at 0)
    ring.reset(params(2, width=1280))
    # then the old packets are gone, the new parameters hold, and a late packet of the old
    # connection is not mixed in
    assert not ring.items and ring.params.width == 1280 and ring.restarts == 1
    ring.add(Packets(0, 1, 0.0, tuple(camera(10.0, 1.0))))
    assert not ring.items
    feed(ring, camera(0.0, 2.0), connection=2, offset=12.5)
    assert ring.items[0][0] == 0.0 and ring.offset == 12.5


def test_packets_lost_on_the_way_start_the_ring_again_at_the_next_keyframe():
    ring = PacketRing(keep_s=5.0)
    ring.reset(params())
    feed(ring, camera(0.0, 3.0))
    later = camera(3.0, 2.0, first_key=5)  # keyframe at 3.5 s
    ring.add(Packets(0, 1, 0.0, tuple(later), lost=12))
    assert ring.restarts == 1
    assert ring.items[0][0] == 3.5 and ring.items[0][1].key


def test_a_camera_that_sends_no_more_keyframes_cannot_grow_the_ring_without_bound():
    # given a camera whose only keyframe is its first packet, then 200 s of other frames
    ring = PacketRing(keep_s=5.0)
    ring.reset(params())
    feed(ring, camera(0.0, 200.0, gop=10_000))
    # then the ring gave up on that keyframe once it held keep_s + 120 s, and waits for the next one
    assert ring.restarts == 1 and not ring.items
