"""Nothing written is ever destroyed: re-runs, a SIGKILLed main process, a full disk and
retention, through the real CLI and its processes (files, a real RTSP camera, a real tmpfs)."""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil
import pytest
import yaml

from conftest import FAST_MODEL, make_video, run_cli
from helpers_proc import assert_all_gone, line_count, stages_of, start_cli, wait_for
from live_helpers import needs_gst, serving
from videoclf.stages.classify.backbones import imagenet_labels

FAST_LIVE = {"watchdog_s": 3, "backoff_s": 0.2, "backoff_max_s": 0.5, "open_timeout_s": 3, "read_timeout_s": 3}


def lines_of(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path} ends in a torn line"
    return [json.loads(x) for x in text.splitlines()]


def digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (but the latest report) and its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ("report.json", "report.html")}


def decoded_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(video=0)]


def write_cfg(path: Path, streams: list[dict], out: Path, **output) -> Path:
    path.write_text(yaml.safe_dump({"streams": streams, "model": FAST_MODEL,
                                    "output": {"dir": str(out), **output}}))
    return path


def kill_main(proc: subprocess.Popen) -> list[psutil.Process]:
    """SIGKILL the main process; its stage processes, which must not outlive it."""
    kids = list(stages_of(proc.pid).values())
    assert kids, "no stage processes"
    proc.kill()
    proc.communicate(timeout=30)
    return kids


def test_a_second_run_of_a_logged_file_keeps_every_file_and_classifies_nothing(tmp_path):
    # given a file run with annotated video and an alert that fires, into one directory
    clip = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=45)
    out = tmp_path / "out"
    rule = {"when": imagenet_labels(), "min_score": 0.0, "for_frames": 1, "cooldown_s": 0.5}
    cfg = write_cfg(tmp_path / "cfg.yaml", [{"name": "clip", "source": str(clip)}], out, video=True, alerts=[rule])
    first = run_cli("run", str(cfg), "-q")
    assert first.returncode == 0, first.stderr
    before = digest(out)
    assert [r["frame"] for r in lines_of(out / "clip.jsonl")] == list(range(45))
    assert any(k.startswith("snapshots/") for k in before) and any(k.endswith(".mp4") for k in before)
    # when the same config runs again
    again = run_cli("run", str(cfg))
    # then it says the log is complete, classifies nothing, and every file is as it was (a new
    # report is kept beside the first)
    assert again.returncode == 0, again.stderr
    assert "already holds every frame" in again.stdout and "45 frames" in again.stdout
    after = digest(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == [k for k in after if k.startswith("reports/")][1:]
    assert json.loads((out / "report.json").read_text())["streams"] == {}
    # and --overwrite is the one way to classify it again
    forced = run_cli("run", str(cfg), "-q", "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert [r["frame"] for r in lines_of(out / "clip.jsonl")] == list(range(45))


def test_a_file_run_killed_with_sigkill_resumes_exactly_once_and_repairs_its_torn_line(tmp_path):
    # given a long file being classified, the main process SIGKILLed mid-run
    clip = make_video(tmp_path / "long.mp4", width=96, height=64, frames=900)
    out = tmp_path / "out"
    cfg = write_cfg(tmp_path / "cfg.yaml", [{"name": "long", "source": str(clip)}], out)
    log = out / "long.jsonl"
    proc = start_cli("run", str(cfg), "-q")
    try:
        wait_for(lambda: line_count(log) >= 60, 120, "60 labels")
        kids = kill_main(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then no stage process outlives it
    assert_all_gone(kids)
    # and when a power cut had also torn the last line
    with open(log, "a") as f:
        f.write('{"stream":"long","frame":')
    kept = log.read_text().rsplit("\n", 1)[0] + "\n"
    # when the run is started again
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    # then the log starts with every whole line of the killed run, the torn part is gone, and
    # every frame of the file is logged exactly once
    text = log.read_text()
    assert text.startswith(kept)
    frames = [r["frame"] for r in lines_of(log)]
    assert frames == list(range(900))
    assert json.loads((out / "report.json").read_text())["outputs"]["labels"]["repaired_tails"] == 1


@needs_gst
@pytest.mark.slow
def test_a_camera_run_killed_with_sigkill_then_run_again_appends_numbers_on_and_its_video_plays(tmp_path):
    clip = make_video(tmp_path / "cam.mp4", 320, 180, frames=60, fps=30, gop=30)
    out = tmp_path / "out"
    with serving(clip) as start:
        cam = start()
        cfg = write_cfg(tmp_path / "cfg.yaml", [{"name": "cam", "source": cam.url(), "live": FAST_LIVE}], out,
                        video=True)
        log = out / "cam.jsonl"
        # given a live run with annotated video, SIGKILLed after about 4 s of labels
        proc = start_cli("run", str(cfg), "-q")
        try:
            wait_for(lambda: line_count(log) >= 1, 90, "the first label")
            time.sleep(4)
            kids = kill_main(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert_all_gone(kids)
        killed = lines_of(log)  # (a torn last line is allowed here: the next start cuts it)
        videos = sorted(out.glob("cam_*.mp4"))
        # when it runs again for a few seconds
        res = run_cli("run", str(cfg), "-q", "--duration", "4")
        assert res.returncode == 0, res.stderr
    # then one log holds both runs' lines, whole, with frame numbers unique and rising
    both = lines_of(log)
    assert both[:len(killed)] == killed and len(both) > len(killed) + 30
    frames = [r["frame"] for r in both]
    assert frames == sorted(set(frames))
    # and the killed run's video file (fragmented MP4) still decodes to within 2 s of its last label
    assert len(videos) == 1
    times = decoded_times(videos[0])
    assert times, "the killed run's video does not decode"
    span = killed[-1]["pts"] - killed[0]["pts"]
    assert times[-1] >= span - 2.0, (times[-1], span)
    # and the second run wrote a video file of its own beside it
    assert len(list(out.glob("cam_*.mp4"))) == 2


@needs_gst
@pytest.mark.slow
def test_video_retention_keeps_the_newest_segments_within_the_limit_plus_one(tmp_path):
    clip = make_video(tmp_path / "cam.mp4", 320, 180, frames=60, fps=30, gop=30)
    out = tmp_path / "out"
    limit = 60_000
    with serving(clip) as start:
        cam = start()
        # given 1 s video segments and a video limit of a few segments, checked every second
        cfg = write_cfg(tmp_path / "cfg.yaml", [{"name": "cam", "source": cam.url(), "live": FAST_LIVE}], out,
                        video=True, segment_seconds=1, retention={"video": {"max_bytes": limit}, "every_s": 1})
        # when it runs for 15 s
        res = run_cli("run", str(cfg), "-q", "--duration", "15")
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    written = report["streams"]["cam"]["video"]["files"]
    kept = sorted(out.glob("cam_*.mp4"))
    sizes = [p.stat().st_size for p in kept]
    # then old segments were deleted and counted, what is left is within the limit plus one
    # segment, and the newest segments are the ones kept
    deleted = report["outputs"]["retention"]["deleted_files"]["video"]
    assert deleted > 0 and len(kept) + deleted == len(written)
    assert sum(sizes) <= limit + max(sizes)
    assert [str(p) for p in kept] == written[-len(kept):]


def noise_video(path: Path, frames: int = 60) -> Path:
    """Incompressible frames: the annotated video fills a disk fast."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(30, 1))
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (240, 320, 3), np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 30)
            for p in s.encode(f.reformat(format="yuv420p")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture
def small_disk(tmpfs):
    return tmpfs("20m")


def test_a_disk_below_its_floor_pauses_video_first_labels_go_on_and_video_resumes(tmp_path, small_disk):
    clip = noise_video(tmp_path / "noise.mp4")
    filler = small_disk / "filler.bin"
    filler.write_bytes(b"\0" * 9_000_000)  # ~11 MB free; the floor is 8 MB
    cfg = write_cfg(tmp_path / "cfg.yaml", [{"name": "cam", "source": str(clip), "loop": True}], small_disk,
                    video=True, min_free="8MB")
    log = small_disk / "cam.jsonl"
    proc = start_cli("run", str(cfg), "-q", "--duration", "120")
    try:
        # given video filling the disk down to its floor
        wait_for(lambda: shutil.disk_usage(small_disk).free < 8_000_000, 90, "the disk to reach its floor")
        time.sleep(2)
        video_size = sum(p.stat().st_size for p in small_disk.glob("cam_*.mp4"))
        labels = line_count(log)
        time.sleep(2)
        # then video stops growing while labels go on
        assert sum(p.stat().st_size for p in small_disk.glob("cam_*.mp4")) == video_size
        assert line_count(log) > labels + 10
        files = len(list(small_disk.glob("cam_*.mp4")))
        # when space is freed, video resumes in a new file
        filler.unlink()
        wait_for(lambda: len(list(small_disk.glob("cam_*.mp4"))) > files, 30, "video to resume")
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    # and no label line was lost or torn: the looped file's frames are logged one after another
    frames = [r["frame"] for r in lines_of(log)]
    assert frames == list(range(len(frames)))
    # and each pause and resumption was said once, and counted (video may fill the freed space
    # and pause again before the run stops)
    report = json.loads((small_disk / "report.json").read_text())
    pauses = report["outputs"]["disk"]["pauses"]
    assert pauses >= 1 and err.count("pause; label logs go on") == pauses, err
    assert pauses - 1 <= err.count("free again: annotated video and snapshots resume") <= pauses, err
    assert report["streams"]["cam"]["video"]["frames"] < len(frames)
