"""Per-stream Prometheus gauges: ``videoclf_stream_up`` and
``videoclf_stream_last_frame_timestamp_seconds``, on the typed records and against a real
run's /metrics: a file that ends, and a live camera that is killed."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, SAMPLE, make_video
from helpers_proc import interrupt, wait_for
from live_helpers import needs_gst, serving
from videoclf.core.sinkstats import StreamStats
from videoclf.core.stats import DecoderStats, LiveStats, StageCounts
from videoclf.devtools.testing import free_port
from videoclf.observe.prom import stream_up

FAST_MODEL = {"backbone": "efficientnet_lite0", "weights": "none"}


def test_up_follows_the_decoder_and_the_connection():
    reported = StageCounts(items=3, wall_s=1.0)
    # a file: not up before its decoder reports, up while it decodes, down once it ended
    assert not stream_up(StreamStats(), DecoderStats())
    assert stream_up(StreamStats(frames=3), DecoderStats(counts=reported))
    assert not stream_up(StreamStats(frames=3, end="eof"), DecoderStats(counts=reported))
    # a camera: up while connected, down while reconnecting and once given up
    assert stream_up(StreamStats(), DecoderStats(counts=reported, live=LiveStats(connected=True, state="live")))
    assert not stream_up(StreamStats(), DecoderStats(counts=reported,
                                                     live=LiveStats(connected=False, state="reconnecting")))
    assert not stream_up(StreamStats(), DecoderStats(counts=reported,
                                                     live=LiveStats(connected=False, gave_up=True, state="gave_up")))


def scrape(port: int) -> dict[str, dict[str, float]] | None:
    """The two per-stream gauges by stream, or None while /metrics does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, dict[str, float]] = {"up": {}, "last": {}}
    for fam in text_string_to_metric_families(text):
        key = {"videoclf_stream_up": "up", "videoclf_stream_last_frame_timestamp_seconds": "last"}.get(fam.name)
        for s in fam.samples if key else ():
            out[key][s.labels["stream"]] = s.value
    return out


def until(proc: subprocess.Popen[str], cond, timeout: float, what: str):
    """``wait_for`` that fails at once, with the run's stderr, if the run exits first."""
    def check():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)  # a scrape every ~0.25 s is plenty (stages report every 0.5 s)
        return cond()

    return wait_for(check, timeout, what)


@contextmanager
def running(cfg, port: int) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q", "--duration", "120",
                             "--metrics", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        yield proc
    finally:
        interrupt(proc)


def test_a_file_that_ended_is_down_beside_one_that_still_decodes(write_config, tmp_path):
    # given a short clip and the looping sample in one run, metrics on
    clip = make_video(tmp_path / "short.mp4", 64, 48, frames=10)
    cfg = write_config([{"name": "short", "source": str(clip)}, {"name": "bbb", "source": str(SAMPLE), "loop": True}],
                       model=FAST_MODEL)
    port = free_port()
    with running(cfg, port) as proc:
        # when the short clip has ended and the sample is being classified
        seen = until(proc, lambda: (m := scrape(port)) and m["up"].get("short") == 0 and m["up"].get("bbb") == 1
                        and "short" in m["last"] and m, 180, "the short clip to end beside the looping sample")
        # then the sample's last frame is recent and moves on; the ended clip's stays where it ended
        time.sleep(1.5)
        later = wait_for(lambda: scrape(port), 30, "a second scrape")
        assert later["up"] == {"short": 0.0, "bbb": 1.0}
        assert time.time() - 30 < later["last"]["bbb"] <= time.time() + 1
        assert later["last"]["bbb"] > seen["last"]["bbb"]
        assert later["last"]["short"] == pytest.approx(seen["last"]["short"], abs=0.05)
        assert later["last"]["short"] < seen["last"]["bbb"]


@needs_gst
def test_a_killed_camera_goes_down(write_config, tmp_path):
    # given a live camera classified with metrics on
    clip = make_video(tmp_path / "cam.mp4", 160, 120, frames=60, fps=30, gop=30)
    with serving(clip) as start:
        cam = start()
        cfg = write_config([{"name": "door", "source": cam.url()}], model=FAST_MODEL)
        port = free_port()
        with running(cfg, port) as proc:
            # when it delivers frames, it is up and its last frame is recent
            up = until(proc, lambda: (m := scrape(port)) and m["up"].get("door") == 1 and "door" in m["last"] and m,
                          120, "the camera to be up with a classified frame")
            assert time.time() - 30 < up["last"]["door"] <= time.time() + 1
            # and when the camera is killed
            cam.kill()
            killed = time.time()
            # then the stream goes down, its last frame from before the kill
            down = until(proc, lambda: (m := scrape(port)) and m["up"].get("door") == 0 and m, 90,
                            "the killed camera's stream to go down")
            assert down["last"]["door"] <= killed + 1
