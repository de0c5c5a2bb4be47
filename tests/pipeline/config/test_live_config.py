"""Live-source configuration, the picklable stage config, and the serve command's errors."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from conftest import ROOT, make_video, run_cli
from videoclf.config.schema import LiveOptions
from videoclf.config.load import parse_config
from videoclf.core.errors import ConfigError
from videoclf.stages.decode.live import LiveConfig, LiveDecoder, live_config, open_options


def test_live_stream_gets_the_live_decoder_config_and_it_pickles():
    # given an rtsp stream with custom live options
    cfg = parse_config({"streams": [{"name": "cam", "source": "rtsp://u:p@10.0.0.1/s",
                                     "live": {"transport": "udp", "watchdog_s": 3, "max_reconnects": 5}}]})
    s = cfg.streams[0]
    # when the stage config is built and sent to a child
    lc = live_config(s, 256, 224)
    back = pickle.loads(pickle.dumps(lc))
    # then it arrives intact, drop_oldest is the policy, and the decoder can be built from it
    assert back == lc and isinstance(back, LiveConfig) and back.live.transport == "udp"
    assert s.is_live and s.effective_policy == "drop_oldest"
    assert LiveDecoder(back).stats().live.reconnects == 0


def test_file_stream_stays_lossless_and_policy_can_be_overridden():
    cfg = parse_config({"streams": [{"name": "f", "source": "a.mp4"},
                                    {"name": "c", "source": "rtsp://h/s", "policy": "lossless"}]})
    assert cfg.streams[0].effective_policy == "lossless"
    assert cfg.streams[1].effective_policy == "lossless"


@pytest.mark.parametrize("live", [{"transport": "http"}, {"watchdog_s": 0}, {"backoff_max_s": -1}, {"bogus": 1}])
def test_bad_live_options_are_refused_with_the_key_path(live):
    with pytest.raises(ConfigError, match=r"streams\.0\.live"):
        parse_config({"streams": [{"name": "c", "source": "rtsp://h/s", "live": live}]})


def test_ffmpeg_options_bound_every_network_call_in_microseconds():
    opts, fmt = open_options("rtsp://h/s", LiveOptions(read_timeout_s=1.5, transport="udp"))
    assert fmt is None and opts["timeout"] == "1500000" and opts["rtsp_transport"] == "udp"
    opts, fmt = open_options("https://h/s.m3u8", LiveOptions())
    assert "rtsp_transport" not in opts and opts["timeout"] == "5000000"
    assert open_options("/dev/video0", LiveOptions()) == ({}, "v4l2")


def test_serve_without_gstreamer_names_the_debian_packages(tmp_path):
    # given a Python without the GStreamer GI bindings (the venv's own)
    clip = make_video(tmp_path / "c.mp4")
    probe = subprocess.run([sys.executable, "-c", "import gi"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("this Python has gi; the missing-package path cannot be shown")
    # when the server script is run with it
    r = subprocess.run([sys.executable, str(ROOT / "pipeline" / "devtools" / "rtsp_server.py"), str(clip)],
                       capture_output=True, text=True, timeout=60)
    # then one clear line names what to install, exit code 2, no traceback
    assert r.returncode == 2
    assert "gir1.2-gst-rtsp-server-1.0" in r.stderr and "Traceback" not in r.stderr


def test_serve_missing_file_is_a_one_line_error():
    r = run_cli("serve", "/nonexistent/clip.mp4", timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == "videoclf: error: /nonexistent/clip.mp4: file not found"
