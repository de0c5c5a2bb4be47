"""Events and clips in the web view: a real server on loopback, real requests, real files."""
from __future__ import annotations

import json
import os

import pytest

from helpers_proc import request
from videoclf.config.load import parse_config
from videoclf.core.runstats import RunStats
from videoclf.observe.webserve import WebServer, start_web
from videoclf.plan import compose

TOKEN = "clips-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served(tmp_path):
    """A web server with a token over an output dir holding two events (one with a clip), the clip,
    a secret file beside the clips folder and a link inside it that points at the secret."""
    out = tmp_path / "out"
    (out / "clips").mkdir(parents=True)
    clip = out / "clips" / "cam_2026-12-07_10-00-00_dog.ts"
    clip.write_bytes(b"\x47" + os.urandom(187) * 3)  # three TS-sized packets: the bytes must come back as they are
    (out / "secret.ts").write_bytes(b"not yours")
    os.symlink(out / "secret.ts", out / "clips" / "cam_2026-12-07_10-00-01_dog.ts")
    events = [{"event": "open", "stream": "cam", "label": "dog", "peak_score": 0.9, "start_time": 1.8e9,
               "start_pts": 12.0, "clip": str(clip), "clip_at_s": 3.0},
              {"event": "close", "stream": "cam", "label": "dog", "start_time": 1.8e9, "clip": str(clip)},
              {"event": "open", "stream": "cam", "label": "cat", "peak_score": 0.7, "start_time": 1.8e9 + 60,
               "start_pts": 72.0, "clip": None}]
    (out / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "op')  # torn tail
    cfg = parse_config({"streams": [{"name": "cam", "source": "rtsp://10.0.0.9/live"}],
                        "output": {"dir": str(out), "web": {"listen": "127.0.0.1:8080", "token": TOKEN}}})
    server: WebServer = start_web("127.0.0.1", 0, cfg, lambda: RunStats(["cam"]), compose, None)
    yield server.server_address[1], clip
    server.shutdown()


def test_recent_events_link_their_clips_and_the_clip_is_served_as_written(served):
    port, clip = served
    # when the events are asked for
    status, _, body = request(port, "GET", "/api/events", headers=BEARER)
    assert status == 200
    events = json.loads(body)["events"]
    # then the opened events come newest first, a clip as a link of this server (no disk path)
    assert [(e["label"], e["clip"]) for e in events] == [("cat", None), ("dog", f"/clips/{clip.name}")]
    status, _, page = request(port, "GET", "/events", headers=BEARER)
    assert status == 200 and f'href="/clips/{clip.name}"'.encode() in page
    # and the link serves the clip's bytes, as an MPEG-TS
    status, headers, data = request(port, "GET", f"/clips/{clip.name}", headers=BEARER)
    assert status == 200 and data == clip.read_bytes() and headers["content-type"] == "video/mp2t"


def test_clips_need_the_token_like_every_page(served):
    port, clip = served
    for path in ("/events", "/api/events", f"/clips/{clip.name}"):
        status, _, body = request(port, "GET", path)
        assert status == 401 and clip.read_bytes() not in body, path


@pytest.mark.parametrize("path", ["/clips/..%2Fsecret.ts", "/clips/%2E%2E%2Fsecret.ts", "/clips/../secret.ts",
                                  "/clips/..%5Csecret.ts", "/clips/cam_2026-12-07_10-00-01_dog.ts",
                                  "/clips/events.jsonl", "/clips/.ts", "/clips/%2Fetc%2Fpasswd"])
def test_no_path_leads_out_of_the_clips_folder(served, path):
    # given a secret beside clips/ and a link to it inside clips/: no name reaches either
    port, _ = served
    status, _, body = request(port, "GET", path, headers=BEARER)
    assert status == 404 and b"not yours" not in body and b"root:" not in body
