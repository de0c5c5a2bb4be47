"""The web view draws a camera's zones (and a roi) on its picture, each zone's card marking its own."""
from __future__ import annotations

import re

from videoclf.config.load import parse_config
from videoclf.config.zones import logged_streams
from videoclf.core.runstats import RunStats
from videoclf.core.stats import DecoderStats
from videoclf.observe.web import render_streams, stream_rows

ZONES = [{"name": "door", "x": 10, "y": 20, "w": 300, "h": 200}, {"name": "yard", "x": 400, "y": 0, "w": 240, "h": 480}]


def rects(card: str) -> list[tuple[str, ...]]:
    return re.findall(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)" class="(\w+)"/>', card)


def test_each_zone_card_shows_every_zone_of_its_camera_and_marks_its_own():
    # given a 640x480 camera with two zones and a 1280x720 one with a roi, as the run counts them
    cfg = parse_config({"streams": [{"name": "cam", "source": "a.mp4", "zones": ZONES},
                                    {"name": "gate", "source": "b.mp4", "roi": {"x": 5, "y": 6, "w": 70, "h": 80}}]})
    logged = logged_streams(cfg.streams)
    stats = RunStats([lg.name for lg in logged], {i: lg.stream for i, lg in enumerate(logged)})
    stats.put("source", 0, "decode[cam]", DecoderStats(name="cam", source={"width": 640, "height": 480}))
    stats.put("source", 1, "decode[gate]", DecoderStats(name="gate", source={"width": 1280, "height": 720}))
    # when the stream panel is rendered
    rows = stream_rows(cfg, stats, pictures=False)
    cards = dict(re.findall(r'<div class="card" id="s-([^"]+)">(.*?)(?=<div class="card"|$)', render_streams(rows)))
    # then each zone's card draws both zones over its camera's 640x480 picture, its own one marked
    assert sorted(cards) == ["cam.door", "cam.yard", "gate"]
    assert rects(cards["cam.door"]) == [("10", "20", "300", "200", "own"), ("400", "0", "240", "480", "other")]
    assert rects(cards["cam.yard"]) == [("10", "20", "300", "200", "other"), ("400", "0", "240", "480", "own")]
    assert 'viewBox="0 0 640 480"' in cards["cam.door"] and ">door</text>" in cards["cam.yard"]
    # and the roi is drawn on its camera's picture
    assert rects(cards["gate"]) == [("5", "6", "70", "80", "own")] and 'viewBox="0 0 1280 720"' in cards["gate"]
