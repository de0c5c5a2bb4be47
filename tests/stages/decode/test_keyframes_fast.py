"""Keyframes only (``classify.keyframes``) and the fast decode (``decode.fast``) on real files:
the frames never decoded keep their numbers, and the loop-filter option reaches the codec."""
from __future__ import annotations

import json

import av
import numpy as np
import pytest

from conftest import SAMPLE, read_jsonl, run_cli
from videoclf.config.sampling import ClassifyOptions
from videoclf.stages.decode.file import DecodeConfig, FileDecoder

FAST_MODEL = {"backbone": "efficientnet_lite0", "weights": "none", "input_size": 64, "max_batch": 4,
              "device": "cpu", "threads": 1}
GOP10 = {"g": "10", "keyint_min": "10", "sc_threshold": "0"}  # a keyframe every 10th frame exactly


def _opened(cfg: DecodeConfig) -> FileDecoder:
    dec = FileDecoder(cfg)
    dec.setup()
    return dec


def _numbered(dec: FileDecoder, n: int | None = None) -> list[tuple[int, int, np.ndarray]]:
    """(frame number, frames never decoded before it, picture) of each frame ``dec`` yields,
    numbered as the stage loop numbers them."""
    seq, out = 0, []
    frames = dec.frames()
    for d in frames:
        seq += d.skipped + d.gated
        out.append((seq, d.undecoded, d.array))
        seq += 1
        if n is not None and len(out) >= n:
            break
    frames.close()
    return out


def _has_b_frames(path) -> bool:
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    return any(b < a for a, b in zip(pts, pts[1:]))


@pytest.mark.parametrize("bframes,threads", [("0", 1), ("2", 1), ("2", 3)])
def test_keyframes_only_keep_their_frame_numbers(video_factory, bframes, threads):
    # given a closed-GOP file of 60 frames, a keyframe every 10, with or without B-frames
    path = video_factory(frames=60, options={**GOP10, "bf": bframes})
    assert _has_b_frames(path) == (bframes != "0")
    geometry = dict(name="kf", source=str(path), resize=32, crop=32, threads=threads)
    full = _numbered(_opened(DecodeConfig(**geometry)))
    # when it is decoded keyframes only (on frame threads too: the decoder hands frames out late)
    dec = _opened(DecodeConfig(**geometry, classify=ClassifyOptions(keyframes=True)))
    got = _numbered(dec)
    # then frames 0, 10, ..., 50 come out, each the same picture as the full decode's frame of that number
    assert [n for n, _, _ in got] == [0, 10, 20, 30, 40, 50]
    assert [u for _, u, _ in got] == [0, 9, 9, 9, 9, 9]
    for n, _, frame in got:
        assert np.array_equal(frame, full[n][2]), n
    # and the 9 frames after the last keyframe are handed to the stage loop at the end
    assert dec.passed_at_end() == (9, 0, 9)
    dec.teardown()


def test_keyframes_of_a_looped_file_go_on_numbering_across_passes(video_factory):
    path = video_factory(frames=30, options={**GOP10, "bf": "2"})
    dec = _opened(DecodeConfig("loop", str(path), 32, 32, threads=1, loop=True,
                               classify=ClassifyOptions(keyframes=True)))
    got = _numbered(dec, 7)
    dec.teardown()
    # the second pass's first keyframe is frame 30: the last pass's 9 trailing frames keep their numbers
    assert [n for n, _, _ in got] == [0, 10, 20, 30, 40, 50, 60] and dec.passes == 3


def test_keyframes_with_a_rate_on_top(video_factory):
    # given keyframes each 1/3 s (GOP 10 at 30 FPS) and at most 1 classified a second
    path = video_factory(frames=60, options={**GOP10, "bf": "0"})
    dec = _opened(DecodeConfig("r", str(path), 32, 32, threads=1, classify=ClassifyOptions(keyframes=True, fps=1)))
    got = _numbered(dec)
    dec.teardown()
    # then every third keyframe is classified; the keyframes between were decoded, not classified
    assert [(n, u) for n, u, _ in got] == [(0, 0), (30, 27)]


def test_a_keyframes_run_logs_the_gop_grid_and_reports_the_frames_never_decoded(tmp_path, video_factory,
                                                                               write_config):
    path = video_factory(frames=60, options={**GOP10, "bf": "2"})
    cfg = write_config([{"name": "kf", "source": str(path), "classify": {"keyframes": True}}], model=FAST_MODEL)
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    assert [r["frame"] for r in read_jsonl(tmp_path / "out" / "kf.jsonl")] == [0, 10, 20, 30, 40, 50]
    report = json.loads((tmp_path / "out" / "report.json").read_text())["streams"]["kf"]
    assert report["skipped"] == {"rate": 0, "keyframes": 54, "motion": 0}
    assert report["decoded"] == 6 and report["classify"]["keyframes"] is True
    assert report["input"]["fast_decode"] is False


def test_the_fast_decode_skips_the_loop_filter(tmp_path, write_config):
    # given the shipped sample (H.264) decoded normally and fast, frame for frame
    def first(fast: bool, n: int = 40) -> list[np.ndarray]:
        dec = _opened(DecodeConfig("f", str(SAMPLE), 224, 224, threads=1, fast=fast))
        out = [d.array.copy() for _, d in zip(range(n), dec.frames())]
        assert dec.info["fast_decode"] is fast
        dec.teardown()
        return out

    normal, fast = first(False), first(True)
    # then the keyframe's picture is near the normal one, and the pictures differ: the option
    # reached the codec (the deblocking filter did not run)
    diff = [float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(normal, fast)]
    assert 0 < diff[0] < 3 and max(diff) < 8
    assert sum(d > 0 for d in diff) >= 30
    # and a run with decode.fast on says so in its report
    cfg = write_config([{"name": "bbb", "source": str(SAMPLE), "decode": {"fast": True}}], model=FAST_MODEL,
                       max_frames=8)
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())["streams"]["bbb"]
    assert report["input"]["fast_decode"] is True and report["frames"] == 8
