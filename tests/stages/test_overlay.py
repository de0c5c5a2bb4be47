"""Overlay helpers: the FPS meter and drawing on the luma plane."""
from __future__ import annotations

import numpy as np

from stages.overlay import RateMeter, draw_overlay, overlay_lines


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
