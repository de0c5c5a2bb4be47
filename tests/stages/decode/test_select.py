"""The frame filter on real decoded frames (PyAV-encoded H.264): the motion gate keeps a still
scene to one frame per heartbeat, keeps every frame at which the picture changed, and the
classification rate keeps frames on a grid of stream time."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from scene_helpers import heartbeat_model, jumping_clip, still_clip
from videoclf.config.sampling import ClassifyOptions, GateOptions, MotionGate
from videoclf.stages.decode.select import FrameFilter, luma_cells


def kept_frames(clip: Path, filt: FrameFilter) -> tuple[list[int], int]:
    """Indices of the frames ``filt`` keeps, in decode order, and the number of frames decoded.
    As the decoders do, each kept frame takes the counts of those passed over before it: they
    must be the gap since the kept frame before."""
    kept, n = [], 0
    with av.open(str(clip)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            n += 1
            if filt.keep(frame):
                skipped, gated, undecoded = filt.take()
                assert skipped + gated == i - (kept[-1] + 1 if kept else 0) and undecoded == 0
                kept.append(i)
    return kept, n


def gate(**kw: float) -> GateOptions:
    return GateOptions(motion=MotionGate(**kw))


def test_a_still_scene_with_keyframe_flicker_is_classified_once_per_heartbeat(tmp_path):
    # given one picture encoded as a 10 s clip at 25 FPS with a keyframe every second
    clip = still_clip(tmp_path / "still.mp4", seconds=10, fps=25)
    with av.open(str(clip)) as c:
        cells = [luma_cells(f) for f in c.decode(video=0)]
    # (the encoder's flicker at each keyframe is there: cells move at the keyframes, by less
    # than the gate's delta)
    steps = [float(np.abs(b - a).max()) for a, b in zip(cells, cells[1:])]
    assert len(cells) == 250
    assert min(steps[k - 1] for k in (25, 50, 75, 100)) > 1.0, steps[:100]
    # when the motion gate with a 2 s heartbeat chooses
    filt = FrameFilter(None, gate(heartbeat_s=2), 25)
    kept, n = kept_frames(clip, filt)
    # then it keeps one frame per heartbeat and no more: 0, 2, 4, 6, 8 s
    assert 5 <= len(kept) <= 6, kept
    assert kept == [0, 50, 100, 150, 200]
    # and counts every other frame as gated (the last ones wait for the next kept frame)
    skipped, gated, undecoded = filt.take()
    assert (skipped, undecoded) == (0, 0) and gated == n - 1 - kept[-1]


@pytest.mark.parametrize("every", [7, 50])
def test_every_frame_at_which_the_picture_changed_is_kept_and_nothing_else_but_heartbeats(tmp_path, every):
    # given a still picture with a square that jumps every ``every`` frames (7: faster than the
    # heartbeat; 50: slower, so heartbeats fall between the jumps)
    fps, frames, heartbeat = 25, 250, 1.5
    moves = list(range(every, frames, every))
    clip = jumping_clip(tmp_path / "jump.mp4", moves, frames, fps)
    # when the motion gate chooses
    kept, n = kept_frames(clip, FrameFilter(None, gate(heartbeat_s=heartbeat), fps))
    # then it keeps exactly the first frame, every frame at which the square moved, and a
    # heartbeat 1.5 s after the last kept frame when nothing moved: each change is classified
    # within one frame interval
    assert n == frames
    assert set(moves) <= set(kept)
    assert kept == heartbeat_model(moves, frames, fps, heartbeat)


def test_a_change_below_the_threshold_share_is_gated(tmp_path):
    # given the jumping square, and a gate that wants a fifth of the picture changed
    moves = list(range(10, 100, 10))
    clip = jumping_clip(tmp_path / "jump.mp4", moves, 100, 25)
    # when it chooses (the square covers about 5 % of the cells at each place)
    kept, _ = kept_frames(clip, FrameFilter(None, gate(threshold=0.2, heartbeat_s=100), 25))
    # then only the first frame is kept
    assert kept == [0]


@pytest.mark.parametrize("fps", [25, 30])
def test_a_rate_keeps_frames_on_a_grid_of_stream_time(tmp_path, fps):
    # given a plain moving clip at 25 or 30 FPS
    clip = still_clip(tmp_path / "clip.mp4", seconds=4, fps=fps)
    # when 5 a second are chosen
    filt = FrameFilter(ClassifyOptions(fps=5), None, fps)
    kept, n = kept_frames(clip, filt)
    # then every 5th (25 FPS) or 6th (30 FPS) frame is kept, from the first
    assert kept == list(range(0, n, fps // 5))
    assert filt.take() == (n - 1 - kept[-1], 0, 0)


@pytest.mark.parametrize("timestamps", ["restart every 2 s", "none on the first frame", "none at all"])
def test_a_camera_whose_timestamps_restart_or_are_missing_still_gets_its_heartbeat(tmp_path, timestamps):
    # given the still scene as a camera sends it: a looping server restarts its timestamps
    # each loop, and a first frame (or every frame) may come with none. Regression: a restart to
    # the last classified frame's time stalled the heartbeat for good, and a frame with no time
    # was timed on the monotonic clock, against stream times
    clip = still_clip(tmp_path / "still.mp4", seconds=10, fps=25)
    filt = FrameFilter(None, gate(heartbeat_s=2), 25)
    kept = []
    with av.open(str(clip)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            step = frame.pts // i if i else 0
            if timestamps == "restart every 2 s":
                frame.pts = (i % 50) * step if i else 0
            elif timestamps == "none at all" or i == 0:
                frame.pts = None
            if filt.keep(frame):
                filt.take()
                kept.append(i)
    # when the gate chooses, then it keeps one frame per 2 s of the camera's frames
    assert kept == [0, 50, 100, 150, 200]
