"""Shared-memory hygiene: run-unique names, removal after a SIGKILLed supervisor, and the
/dev/shm free-space check."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import FAST_MODEL, ROOT, SHM_TAG, make_video, run_cli, shm_segments
from helpers_proc import assert_all_gone, line_count, stages_of, start_cli, wait_for
from videoclf.ipc.shm import remove_stale_segments


@pytest.fixture
def busy_run(tmp_path: Path, write_config):
    video = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=60)
    cfg = write_config([{"name": "cam1", "source": str(video), "loop": True}], model=FAST_MODEL)
    proc = start_cli("run", str(cfg), "-q", "--duration", "120")
    try:
        wait_for(lambda: line_count(tmp_path / "out" / "cam1.jsonl") >= 10, 90, "the first labels")
        yield proc, cfg
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _tracker_of(pid: int) -> list[psutil.Process]:
    return [k for k in psutil.Process(pid).children() if "resource_tracker" in " ".join(k.cmdline())]


def test_segment_names_are_run_unique_and_prefixed(busy_run):
    # given a running pipeline, then its segments carry videoclf_<supervisor pid>_<tag+random>_<ring>
    proc, _ = busy_run
    names = shm_segments()
    assert names and all(re.match(rf"^videoclf_{proc.pid}_{SHM_TAG}[0-9a-f]{{8}}_(cam1_rgb|ctl)$", n) for n in names)


def test_sigkill_of_the_supervisor_leaves_no_process_and_no_segment(busy_run):
    # given a running pipeline
    proc, _ = busy_run
    stages = list(stages_of(proc.pid).values())
    assert len(stages) == 3 and shm_segments()
    # when the supervisor is killed with SIGKILL
    proc.kill()
    proc.wait(10)
    # then every stage dies with it (PR_SET_PDEATHSIG) and Python's resource tracker, which
    # registered the supervisor's segments, unlinks them
    assert_all_gone(stages)
    wait_for(lambda: not shm_segments(), 10, "the resource tracker to unlink the segments")


def test_next_start_removes_segments_of_a_killed_run(busy_run, tmp_path):
    # given a run killed together with its resource tracker (an OOM kill of the whole group)
    proc, cfg = busy_run
    stages = list(stages_of(proc.pid).values())
    trackers = _tracker_of(proc.pid)
    assert trackers
    for p in trackers:
        p.kill()
    proc.kill()
    proc.wait(10)
    assert_all_gone(stages)
    stale = shm_segments()
    assert stale, "segments should survive when nobody is left to unlink them"
    # when videoclf starts again
    res = run_cli("run", str(cfg), "-q", "--max-frames", "5", "--duration", "60")
    # then it removes them, says so, and runs normally
    assert res.returncode == 0, res.stderr
    assert "stale shared-memory segment" in res.stderr
    assert not (stale & shm_segments())


def test_stale_removal_keeps_segments_of_live_runs(tmp_path):
    # given segments named after a live pid (ours) and a dead one
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = f"videoclf_{os.getppid()}_{SHM_TAG}00000000_x_rgb"
    gone = f"videoclf_{dead.pid}_{SHM_TAG}00000000_x_rgb"
    for n in (mine, gone):
        Path("/dev/shm", n).write_bytes(b"\0" * 16)
    try:
        # when stale segments are removed
        removed = remove_stale_segments()
        # then only the dead run's segment goes
        assert gone in removed and mine not in removed
        assert Path("/dev/shm", mine).exists() and not Path("/dev/shm", gone).exists()
    finally:
        for n in (mine, gone):
            Path("/dev/shm", n).unlink(missing_ok=True)


def test_too_little_shm_is_refused_with_the_size_needed(tmp_path, write_config):
    # given rings far larger than /dev/shm (256 slots of a 4096 px crop per stream)
    video = make_video(tmp_path / "clip.mp4", frames=3)
    free = os.statvfs("/dev/shm").f_bavail * os.statvfs("/dev/shm").f_frsize
    slots = 256
    big = {**FAST_MODEL, "input_size": int((free / slots / 3) ** 0.5) + 64, "resize": None}
    big.pop("resize")
    cfg = write_config([{"name": "cam1", "source": str(video), "ring_slots": slots}], model=big)
    # when the run starts
    res = run_cli("run", str(cfg), "-q")
    # then it refuses before creating anything: one line, the size needed, exit 2
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "/dev/shm" in err[0] and "MiB" in err[0] and "need" in err[0]
    assert "Traceback" not in res.stderr


@pytest.fixture
def read_only_shm() -> list[str]:
    """A command prefix that runs its command in a mount namespace of its own where /dev/shm is
    a read-only tmpfs (the host's /dev/shm is not touched)."""
    prefix = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs -o ro tmpfs /dev/shm && exec "$@"', "sh"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.strip()}")
    return prefix


def test_a_dev_shm_that_refuses_segments_is_one_line_naming_the_segment(tmp_path, write_config, read_only_shm):
    # regression: creating a pool failed with an OSError other than no-space (here EROFS; also
    # EACCES, EMFILE, EEXIST) and the run ended in a traceback
    # given a /dev/shm where no segment can be created
    video = make_video(tmp_path / "clip.mp4", frames=3)
    cfg = write_config([{"name": "cam1", "source": str(video)}], model=FAST_MODEL)
    # when the run starts
    res = subprocess.run([*read_only_shm, sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    # then it stops with exit 1 and one line naming /dev/shm, the segment and the system's reason
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert re.fullmatch(rf"videoclf: error: /dev/shm/videoclf_\d+_{SHM_TAG}[0-9a-f]{{8}}_ctl: cannot create the "
                        r"segment for ctl \(Read-only file system\)", lines[0]), lines[0]
    assert not (tmp_path / "out" / "cam1.jsonl").exists()  # nothing started
