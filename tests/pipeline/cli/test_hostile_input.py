"""Hostile and odd input: each case is a clear one-line error (exit 2) or a documented,
tested behaviour, never a traceback. Media are generated with PyAV."""
from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import FAST_MODEL, make_audio_only, make_video, read_jsonl, run_cli
from videoclf.config.load import MAX_CONFIG_BYTES
from videoclf.stages.decode.file import DecodeConfig, to_model_rgb


def classify(tmp_path: Path, write_config, source: Path, *extra: str, **model):
    cfg = write_config([{"name": "v", "source": str(source)}], model={**FAST_MODEL, **model})
    res = run_cli("run", str(cfg), "-q", "--duration", "120", *extra)
    assert "Traceback" not in res.stderr, res.stderr
    log = tmp_path / "out" / "v.jsonl"
    return res, (read_jsonl(log) if log.exists() else [])


def one_error_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("videoclf: error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def encode(path: Path, sizes: list[tuple[int, int]], n: int, fmt: str = "mpegts", pts=None) -> Path:
    """One H.264 stream per size, written one after another into the same file."""
    with open(path, "wb") as out:
        for w, h in sizes:
            part = path.with_suffix(f".{w}x{h}.ts")
            with av.open(str(part), "w", format=fmt) as c:
                s = c.add_stream("libx264", rate=Fraction(30, 1))
                s.width, s.height, s.pix_fmt = w, h, "yuv420p"
                for i in range(n):
                    img = np.full((h, w, 3), (i * 9) % 256, np.uint8)
                    f = av.VideoFrame.from_ndarray(img, format="rgb24")
                    f.pts = i if pts is None else pts[i]
                    f.time_base = Fraction(1, 30)
                    for p in s.encode(f):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
            out.write(part.read_bytes())
            part.unlink()
    return path


def test_corrupt_bytes_mid_file_are_skipped_and_the_run_completes(tmp_path, write_config):
    # given an MPEG-TS file whose middle third is overwritten with noise
    video = encode(tmp_path / "bad.ts", [(96, 64)], 90)
    data = bytearray(video.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    # when it is classified
    res, rows = classify(tmp_path, write_config, video)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # then the run ends normally with the readable frames (damage is skipped and counted, no black frames)
    assert res.returncode == 0, res.stderr
    assert 0 < len(rows) < 90
    assert report["streams"]["v"]["frames"] == len(rows)


def test_truncated_file_classifies_what_is_there(tmp_path, write_config):
    # given a TS file cut in half
    video = encode(tmp_path / "cut.ts", [(96, 64)], 90)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    res, rows = classify(tmp_path, write_config, video)
    assert res.returncode == 0, res.stderr
    assert 10 < len(rows) < 90
    assert [r["frame"] for r in rows] == list(range(len(rows)))


def test_truncated_mp4_without_index_is_a_clear_error(tmp_path, write_config):
    # given an mp4 cut before its index (moov) was written
    video = make_video(tmp_path / "cut.mp4", frames=60)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    res, _ = classify(tmp_path, write_config, video)
    assert res.returncode == 2
    assert str(video) in one_error_line(res) and "not a readable video" in res.stderr


def test_zero_byte_file(tmp_path, write_config):
    video = tmp_path / "empty.mp4"
    video.write_bytes(b"")
    res, _ = classify(tmp_path, write_config, video)
    assert res.returncode == 2 and "file is empty (0 bytes)" in one_error_line(res)


@pytest.mark.parametrize("w,h,pix", [(3840, 2160, "yuv420p"), (16, 16, "yuv420p"), (33, 7, "yuv444p")])
def test_odd_sizes_are_classified(tmp_path, write_config, w, h, pix):
    # given a 4K, a tiny and an odd-sized (33x7: catches H/W mix-ups) video
    video = make_video(tmp_path / f"v{w}x{h}.mkv", width=w, height=h, frames=3, pix_fmt=pix)
    res, rows = classify(tmp_path, write_config, video)
    # then every frame is classified
    assert res.returncode == 0, res.stderr
    assert [r["frame"] for r in rows] == [0, 1, 2]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["streams"]["v"]["input"]["width"], report["streams"]["v"]["input"]["height"]) == (w, h)


def test_rotated_phone_video_is_classified_upright(tmp_path, write_config):
    # given a landscape-stored frame with a red top edge and a 90° display matrix (phone held upright)
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv444p"
        s.set_display_rotation(90)
        for i in range(3):
            img = np.zeros((32, 64, 3), np.uint8)
            img[:4, :, 0] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv444p")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    # when a frame is brought to the model input (64 px shorter side, 32 px centre crop of a wide frame)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        assert frame.rotation == 90
        crop = to_model_rgb(frame, DecodeConfig("p", str(path), resize=64, crop=64))
    # then it is upright: turned 90° counter-clockwise, the stored top edge is on the left
    assert crop.shape == (64, 64, 3)
    red = crop[..., 0] > 128
    assert red[:, :6].mean() > 0.9 and red[:, 12:].mean() < 0.05
    res, rows = classify(tmp_path, write_config, path)
    assert res.returncode == 0 and len(rows) == 3


def test_variable_frame_rate_keeps_each_frames_timestamp(tmp_path, write_config):
    # given irregular timestamps (in 1/30 s: gaps of 1 to 30 frames)
    pts = [0, 1, 2, 6, 7, 15, 45, 46]
    video = encode(tmp_path / "vfr.mkv", [(64, 48)], len(pts), fmt="matroska", pts=pts)
    res, rows = classify(tmp_path, write_config, video)
    # then every frame is classified once, in order, with its own pts
    assert res.returncode == 0, res.stderr
    assert [r["pts"] for r in rows] == pytest.approx([p / 30 for p in pts], abs=1e-3)


def test_audio_only_file(tmp_path, write_config):
    path = make_audio_only(tmp_path / "song.m4a")
    res, _ = classify(tmp_path, write_config, path)
    assert res.returncode == 2 and f"{path}: has no video stream" in one_error_line(res)


def test_resolution_change_mid_stream(tmp_path, write_config):
    # given one TS file holding 20 frames at 96x64 then 20 at 40x70
    video = encode(tmp_path / "switch.ts", [(96, 64), (40, 70)], 20)
    res, rows = classify(tmp_path, write_config, video)
    # then all 40 are classified: geometry is computed per frame
    assert res.returncode == 0, res.stderr
    assert len(rows) == 40


def test_yaml_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 20)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nstreams: []\n")
    res = run_cli("validate", str(bomb))
    assert res.returncode == 2 and "YAML aliases" in one_error_line(res)


@pytest.mark.parametrize("nested", ["[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000],
                         ids=["lists", "mappings"])
def test_deeply_nested_yaml_names_the_file_and_the_depth_limit(tmp_path, nested):
    # regression: a 3000-deep document ended in a RecursionError traceback (PyYAML composes recursively)
    deep = tmp_path / "deep.yaml"
    deep.write_text(f"streams:\n  - {{name: a, source: x.mp4}}\nmodel: {nested}\n")
    for cmd in ("validate", "run"):
        res = run_cli(cmd, str(deep))
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().count("\n") == 0, res.stderr
        assert one_error_line(res).startswith(f"videoclf: error: {deep}: line 3, column ")
        assert "invalid YAML: nested deeper than 50 levels" in res.stderr


def test_huge_config_is_refused_before_parsing(tmp_path):
    huge = tmp_path / "huge.yaml"
    huge.write_text("streams: []\n# " + "x" * MAX_CONFIG_BYTES + "\n")
    res = run_cli("validate", str(huge))
    assert res.returncode == 2 and "the limit is" in one_error_line(res)


class _Exploit:
    """Unpickling this would create a file: proof that the weights file was executed."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_weights_that_are_not_a_state_dict_are_refused_unexecuted(tmp_path, write_config):
    # given a checkpoint whose unpickling would run a shell command
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    weights = tmp_path / "evil.pth"
    torch.save({"state_dict": _Exploit()}, weights)
    video = make_video(tmp_path / "v.mp4", frames=3)
    # when it is given as model weights
    res, _ = classify(tmp_path, write_config, video, weights=str(weights))
    # then the run refuses it with one line naming the file, and the command never ran
    assert res.returncode == 2
    assert str(weights) in one_error_line(res) and "not a loadable state_dict" in res.stderr
    assert not marker.exists()


def test_output_dir_that_is_a_file(tmp_path, write_config):
    blocker = tmp_path / "out"
    blocker.write_text("not a directory")
    video = make_video(tmp_path / "v.mp4", frames=3)
    res, _ = classify(tmp_path, write_config, video)
    assert res.returncode == 2 and f"output.dir {blocker}" in one_error_line(res)


@pytest.fixture
def tiny_disk(tmpfs):
    return tmpfs("64k")


def test_a_disk_full_until_the_run_ends_stops_cleanly_with_whole_lines(tmp_path, write_config, tiny_disk):
    # given a 64 KiB output disk and a looping source that will fill it
    video = make_video(tmp_path / "v.mp4", width=96, height=64, frames=60)
    cfg = write_config([{"name": "v", "source": str(video), "loop": True}], model=FAST_MODEL,
                       output={"dir": str(tiny_disk)})
    # when the run goes on until its duration ends, the disk full all the while
    res = run_cli("run", str(cfg), "-q", "--duration", "20")
    # then the label log paused once (said once), the run stops with one line saying the disk is
    # full, and the log holds whole lines only, one per frame up to there
    assert "Traceback" not in res.stderr
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("the disk is full; label logs pause") == 1, res.stderr
    assert "No space left on device" in one_error_line(res)
    text = (tiny_disk / "v.jsonl").read_text()
    assert text.endswith("\n")
    rows = [json.loads(ln) for ln in text.splitlines()]
    assert len(rows) > 50 and [r["frame"] for r in rows] == list(range(len(rows)))
