"""Live stream time: the camera's pts continued across reconnects (videoclf.stages.decode.streamtime.StreamTime)."""
from __future__ import annotations

from typing import Optional

import pytest

from videoclf.stages.decode.streamtime import MIN_STEP_S, StreamTime


def feed(clock: StreamTime, frames: list[tuple[Optional[float], float]]) -> list[float]:
    """Stream times of (camera pts, monotonic decode time) frames."""
    return [clock(pts, at) for pts, at in frames]


def test_a_reconnect_whose_pts_start_again_at_zero_continues_after_the_outage():
    # given a first connection of 10 frames at 25 fps whose camera pts start at 0.2 s
    clock = StreamTime()
    first = feed(clock, [(0.2 + k * 0.04, 100.0 + k * 0.04) for k in range(10)])
    # when the camera comes back 3 s after the last frame with its pts at 0 again
    clock.reconnected()
    second = feed(clock, [(k * 0.04, 100.36 + 3.0 + k * 0.04) for k in range(10)])
    # then the first connection kept the camera's pts, the stream time never went backwards,
    # the gap across the reconnect is the outage, and the new connection kept its spacing
    assert first == pytest.approx([0.2 + k * 0.04 for k in range(10)])
    times = first + second
    assert all(b >= a for a, b in zip(times, times[1:]))
    assert second[0] - first[-1] == pytest.approx(3.0)
    assert [b - a for a, b in zip(second, second[1:])] == pytest.approx([0.04] * 9)


def test_a_camera_whose_pts_jump_forward_on_reconnect_is_placed_by_the_outage_too():
    # given a camera that reports absolute pts (hours) after it reconnects
    clock = StreamTime()
    first = feed(clock, [(k * 0.1, 50.0 + k * 0.1) for k in range(5)])
    clock.reconnected()
    # when it is back 2 s later
    second = feed(clock, [(7200.0, 52.4), (7200.1, 52.5)])
    # then its stream time follows the outage, not the camera's jump
    assert second[0] - first[-1] == pytest.approx(2.0)
    assert second[1] - second[0] == pytest.approx(0.1)


def test_pts_that_go_backwards_within_a_connection_are_re_anchored():
    # given a camera that restarts its clock without dropping the connection
    clock = StreamTime()
    times = feed(clock, [(5.0, 10.0), (5.1, 10.1), (0.0, 10.6), (0.1, 10.7)])
    # then the stream time goes on after the jump by the time that passed
    assert times == pytest.approx([5.0, 5.1, 5.6, 5.7])


def test_an_instant_reconnect_still_moves_forward():
    # given a reconnect whose first frame was decoded no later than the last one (clock granularity)
    clock = StreamTime()
    a = clock(1.0, 2.0)
    clock.reconnected()
    b = clock(0.0, 2.0)
    # then it lands just after the last frame, never on or before it
    assert b == pytest.approx(a + MIN_STEP_S)


def test_a_frame_without_pts_is_placed_by_elapsed_time_and_the_next_one_anchors_the_connection():
    # regression: the first frame after an RTSP reconnect often has no pts; it was logged with
    # none, and its alert event took the epoch time as its stream time
    clock = StreamTime()
    first = feed(clock, [(None, 9.9), (0.1, 10.0), (0.2, 10.1)])
    clock.reconnected()
    # when the camera is back 2 s later, its first frame without pts, then pts from 0
    second = feed(clock, [(None, 12.1), (0.0, 12.15), (0.04, 12.19)])
    # then every frame has a stream time, in order, the outage and the camera's spacing kept
    assert first == pytest.approx([0.0, 0.1, 0.2])
    assert second == pytest.approx([2.2, 2.25, 2.29])
