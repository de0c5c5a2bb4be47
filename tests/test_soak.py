"""A one-minute soak: open file descriptors and shared-memory segments must not grow.
RSS growth is left to benchmarks/soak.py (too noisy for a test on a shared machine)."""
from __future__ import annotations

import pytest

from benchmarks.soak import soak, summarize
from conftest import FAST_MODEL, make_video


@pytest.mark.slow
def test_one_minute_soak_has_no_fd_or_shm_growth(tmp_path, write_config):
    # given a looping file stream
    video = make_video(tmp_path / "clip.mp4", width=96, height=64, frames=60)
    cfg = write_config([{"name": "cam1", "source": str(video), "loop": True}], model=FAST_MODEL)
    # when it runs for a minute, sampled every 5 s
    rows, code = soak(str(cfg), 60, 5, tmp_path / "soak", warmup_s=15)
    # then it stopped cleanly, and no process's fd count or the run's shm segment count changed after warm-up
    assert code == 0
    summary = summarize(rows, warmup_s=15)
    assert {"supervisor", "decode[cam1]", "classify[cpu]", "/dev/shm"} <= set(summary)
    for name, s in summary.items():
        assert s["fds_last"] == s["fds_first"] == s["fds_max"], (name, s)
    assert summary["/dev/shm"]["fds_first"] == 2  # the stream's frame pool and the run's flags, nothing more
    assert (tmp_path / "soak" / "soak.csv").stat().st_size > 0 and (tmp_path / "soak" / "soak.svg").exists()
