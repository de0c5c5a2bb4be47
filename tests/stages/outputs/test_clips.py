"""Event clips from real H.264 packets: the decoder's tap, the sink's recorder, a playable file."""
from __future__ import annotations

from pathlib import Path

import av
import pytest

from conftest import make_video
from videoclf.stages.decode.packettap import PacketTap
from videoclf.stages.outputs.clips import ClipRecorder

FPS, GOP = 10, 10  # a keyframe a second


@pytest.fixture(scope="module")
def camera_batches(tmp_path_factory) -> list:
    """20 s of a real H.264 stream in MPEG-TS (Annex B, as FFmpeg's RTSP demuxer gives it), through
    the decoder's real packet tap, taken one packet at a time as a decoder loop would."""
    path = make_video(tmp_path_factory.mktemp("cam") / "cam.ts", 160, 96, frames=20 * FPS, fps=FPS, gop=GOP)
    tap, out = PacketTap(), []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for _ in tap.wrap(c.demux(stream), stream):
            out += tap.take(0, offset=0.0)
    return out


def probe(path: str) -> tuple[av.video.stream.VideoStream, list[float]]:
    """The clip's stream and the pts (s) of every frame it decodes to, to its end."""
    with av.open(path) as c:
        s = c.streams.video[0]
        return s, [float(f.pts * f.time_base) for f in c.decode(s)]


def run_to(rec: ClipRecorder, batches: list, t: float, start: int = 0) -> int:
    """Feed the batches up to camera time ``t`` (the camera's pts in seconds: its first packet is at 0,
    and the tap's offset is 0, so stream time is camera time); returns where it stopped."""
    i = start
    while i < len(batches):
        b = batches[i]
        if getattr(b, "packets", None) and b.packets[0].pts / 90_000 > t:
            break
        rec.packets(b)
        i += 1
    return i


def test_a_clip_spans_pre_s_before_to_post_s_after_the_event_and_plays(tmp_path, camera_batches):
    rec = ClipRecorder(str(tmp_path), ["cam"], pre_s=3.0)
    # given 10 s of the camera in the ring; the event's first frame is at camera pts 9.5 s
    i = run_to(rec, camera_batches, 10.0)
    fields = rec.clip(0, 9.5, pre_s=3.0, post_s=4.0, label="cat")
    assert fields is not None
    path = fields["clip"]
    assert Path(path).parent == tmp_path / "clips" and path.endswith("_cat.ts")
    # and the camera goes on past post_s
    run_to(rec, camera_batches, 16.0, i)
    assert rec.in_use() == set()  # finished by itself at post_s: retention may now see it
    s, pts = probe(path)
    # then the clip keeps the camera's codec, size and pixel format (stream copy)
    assert (s.codec_context.name, s.width, s.height, s.codec_context.pix_fmt) == ("h264", 160, 96, "yuv420p")
    # the event's start is clip_at_s into the clip (clip time = camera pts − the clip's first pts) ...
    at = fields["clip_at_s"]
    first, last = min(pts), max(pts)
    # ... with at least pre_s before it (starting at a keyframe: at most a GOP more) and post_s after it
    assert at - first >= 3.0 and at - first <= 3.0 + GOP / FPS
    assert last - at >= 4.0 - 1 / FPS
    assert len(pts) == round((last - first) * FPS) + 1  # every frame in between decodes
    # and the frame at clip_at_s is the event's frame, 95 (make_video: frame i has red (7 i) mod 256)
    with av.open(path) as c:
        red = [f.to_ndarray(format="rgb24")[:, 60:, 0].mean() for f in c.decode(video=0)
               if abs(float(f.pts * f.time_base) - at) < 0.01]
    assert len(red) == 1 and abs(red[0] - 95 * 7 % 256) < 3


def test_a_second_event_while_recording_extends_the_same_clip(tmp_path, camera_batches):
    rec = ClipRecorder(str(tmp_path), ["cam"], pre_s=2.0)
    i = run_to(rec, camera_batches, 5.0)
    first = rec.clip(0, 5.0, 2.0, 2.0, "cat")
    i = run_to(rec, camera_batches, 6.0, i)
    second = rec.clip(0, 6.0, 2.0, 2.0, "cat")
    # then the second event names the same file, 1 s further in, and the clip lasts to 2 s after it
    assert second["clip"] == first["clip"] and second["clip_at_s"] == pytest.approx(first["clip_at_s"] + 1.0)
    run_to(rec, camera_batches, 12.0, i)
    _, pts = probe(second["clip"])
    assert max(pts) - min(pts) >= second["clip_at_s"] + 2.0 - 1 / FPS
    # a later event opens a new file: never one that exists
    third = rec.clip(0, 12.0, 2.0, 2.0, "cat")
    assert third["clip"] != first["clip"]
    rec.close()


def test_a_clip_still_recording_when_the_stream_ends_is_finished_with_what_it_has(tmp_path, camera_batches):
    rec = ClipRecorder(str(tmp_path), ["cam"], pre_s=2.0)
    i = run_to(rec, camera_batches, 5.0)
    fields = rec.clip(0, 5.0, 2.0, 60.0, "dog")
    run_to(rec, camera_batches, 7.0, i)
    rec.end(0)  # the stream ends 2 s into a 60 s post_s
    _, pts = probe(fields["clip"])
    assert 3.5 <= max(pts) - min(pts) <= 5.5


def test_an_event_before_any_packet_names_its_clip_which_starts_at_the_first_keyframe(tmp_path, camera_batches):
    # given a recorder that has no packet of the stream yet (the run's first frame)
    rec = ClipRecorder(str(tmp_path), ["cam"], pre_s=2.0)
    fields = rec.clip(0, 0.0, 2.0, 3.0, "cat")
    # then the event names its clip at once; where the event lies in it is unknown
    assert fields["clip_at_s"] is None and Path(fields["clip"]).exists()
    # when the packets come, the clip starts at the first keyframe and lasts post_s from there
    run_to(rec, camera_batches, 6.0)
    _, pts = probe(fields["clip"])
    assert min(pts) == 0.0 and 3.0 - 1 / FPS <= max(pts) <= 3.0 + 0.2


def test_a_reserved_clip_that_never_gets_a_packet_is_removed_at_the_end(tmp_path):
    rec = ClipRecorder(str(tmp_path), ["cam"], pre_s=2.0)
    path = Path(rec.clip(0, 10.0, 2.0, 2.0, "cat")["clip"])
    assert path.exists()
    rec.end(0)
    assert not path.exists()


def test_below_the_free_space_floor_no_clip_starts_and_a_recording_one_is_finished(tmp_path, camera_batches):
    low = [False]
    rec = ClipRecorder(str(tmp_path), ["cam"], pre_s=2.0, low=lambda: low[0])
    i = run_to(rec, camera_batches, 5.0)
    fields = rec.clip(0, 5.0, 2.0, 10.0, "cat")
    i = run_to(rec, camera_batches, 6.0, i)
    # when the disk runs low mid-clip
    low[0] = True
    i = run_to(rec, camera_batches, 9.0, i)
    # then the clip was finished where the floor was reached, and it plays
    assert rec.in_use() == set()
    _, pts = probe(fields["clip"])
    assert 3.0 <= max(pts) - min(pts) <= 4.5
    # and a new event gets no clip while the disk stays low
    assert rec.clip(0, 9.0, 2.0, 2.0, "cat") is None and rec.skipped == 1
