"""Overlay helpers: the FPS meter and drawing on the luma plane."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

from conftest import ROOT
from videoclf.core.records import FrameRecord, Result
from videoclf.stages.outputs.stage import OutputsConfig, OutputsSink
from videoclf.stages.outputs.overlay import RateMeter, draw_overlay, local_time, overlay_lines
from videoclf.stages.outputs.labels import SinkConfig


def test_rate_meter_counts_batched_arrivals_over_the_window():
    # regression: a batch of 8 Results arriving within microseconds showed ~500 fps in the web view
    meter = RateMeter(window_s=2.0)
    fps = 0.0
    for k in range(10):  # 10 batches of 8 frames, one batch every 0.4 s = 20 fps
        for j in range(8):
            fps = meter.tick(k * 0.4 + j * 1e-6)
    assert 18 <= fps <= 22


def test_overlay_draws_only_in_the_top_left_panel_of_the_luma_plane():
    # given a mid-grey I420 frame 120 wide, 90 tall
    yuv = np.full((135, 120), 128, np.uint8)
    # when the overlay is drawn
    draw_overlay(yuv, 90, overlay_lines("cam", 1.5, 30.0, [("ambulance", 0.91)]))
    # then the panel changed, the bottom rows and the chroma planes did not
    assert (yuv[:10, :60] != 128).mean() > 0.5
    assert (yuv[80:90] == 128).all() and (yuv[90:] == 128).all()


# 2026-12-06 21:31:07 UTC: 22:31:07 in Paris (CET, UTC+1), 06:31:07 the next day in Tokyo (UTC+9)
WINTER = datetime(2026, 12, 6, 21, 31, 7, tzinfo=timezone.utc).timestamp()


def test_local_time_is_the_cctv_date_and_time_in_the_zone_with_its_daylight_saving():
    assert local_time(WINTER, ZoneInfo("Europe/Paris")) == "2026-12-06 22:31:07"
    assert local_time(WINTER, ZoneInfo("Asia/Tokyo")) == "2026-12-07 06:31:07"
    summer = datetime(2026, 7, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    assert local_time(summer, ZoneInfo("Europe/Paris")) == "2026-07-01 14:00:00"  # CEST, UTC+2


def test_local_time_defaults_to_the_system_zone():
    # given a process whose system zone is New York (TZ), with no zone configured
    code = f"from videoclf.stages.outputs.overlay import local_time; print(local_time({WINTER}))"
    res = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env={**os.environ, "TZ": "America/New_York"},
                         capture_output=True, text=True, timeout=60)
    # then it shows New York's time (EST, UTC-5)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "2026-12-06 16:31:07"


def _result(stream: int, pts: float, epoch: float) -> Result:
    return Result(FrameRecord(stream, 7, 0, pts, epoch, 0.0, 1.0), (("ambulance", 0.91),), 2.0, 1)


def test_a_live_frame_shows_the_local_date_and_time_and_a_file_frame_its_stream_time():
    # given the outputs sink of a live camera (watchdog 10 s) and a file, in Tokyo
    sink = OutputsSink(OutputsConfig("sink.null", SinkConfig("out", ("door", "clip")), (None, None),
                                     live_gap_s=(10.0, None), timezone="Asia/Tokyo"))
    # when it writes the overlay of a frame of each
    live = sink.overlay_text(_result(0, 3.25, WINTER), 25.0)
    file = sink.overlay_text(_result(1, 3.25, WINTER), 25.0)
    # then the camera's header carries the local date and time, the file's its stream time
    assert live[0] == "door  2026-12-07 06:31:07   25.0 fps"
    assert file[0] == "clip  t=    3.250 s   25.0 fps"
    assert live[1:] == file[1:] == ["ambulance  0.91"]
    # and the longer live header still draws inside the frame's top-left panel
    yuv = np.full((135, 120), 128, np.uint8)
    draw_overlay(yuv, 90, live)
    assert (yuv[:10, :60] != 128).mean() > 0.5 and (yuv[90:] == 128).all()
