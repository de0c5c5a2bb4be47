"""Prometheus /metrics and the live web view, against a real run of the CLI."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import cv2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, SAMPLE, run_cli
from helpers_proc import interrupt, wait_for
from videoclf.devtools.testing import free_port


def get(url: str, data: bytes | None = None, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, data), timeout=timeout) as r:
        return r.read()


def answered(check):
    """``check``, with a server that does not answer yet (OSError) read as 'not yet'."""
    def call():
        try:
            return check()
        except OSError:
            return None

    return call


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def headless(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="videoclf-chromium-")
    try:
        return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--window-size=1200,800",
                               "--virtual-time-budget=3000", *args, url],
                              capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_metrics_and_web_view_serve_a_running_pipeline(write_config, tmp_path):
    # given a run of the shipped sample with real weights, metrics and the web view on loopback
    mport, wport = free_port(), free_port()
    # (looped, so the run is still going however fast this machine classifies the clip)
    cfg = write_config([{"name": "bbb", "source": str(SAMPLE), "loop": True}], output={"dir": str(tmp_path / "out")})
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q", "--duration", "300",
                             "--metrics", str(mport), "--web", f":{wport}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    web = f"http://127.0.0.1:{wport}"
    try:
        # when frames have been classified
        state = wait_for(answered(lambda: (s := json.loads(get(f"{web}/api/state"))) and s["streams"][0]["top"]
                                  and s["streams"][0]["frames"] > 0
                                  and (tmp_path / "out" / "live" / "bbb.jpg").exists() and s),
                         240, "the web state to show classified frames and the live picture")
        # then /metrics parses and counts the stream's frames, latency and stage busy time
        # (each stage reports every 0.5 s: wait for the classifier's first report too)
        def families():
            text = get(f"http://127.0.0.1:{mport}/metrics").decode()
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            busy = fams.get("videoclf_stage_busy_seconds")
            return fams if busy and any(x.labels["stage"].startswith("classify[") for x in busy.samples) else None

        fams = wait_for(answered(families), 240, "/metrics to carry the classifier's busy time")
        frames = [s.value for s in fams["videoclf_frames"].samples if s.labels.get("stream") == "bbb"]
        assert frames and frames[0] > 0
        e2e_count = [s.value for s in fams["videoclf_latency_seconds"].samples
                     if s.name.endswith("_count") and s.labels == {"stream": "bbb", "kind": "e2e"}]
        assert e2e_count and e2e_count[0] > 0
        assert any(s.labels["stage"].startswith("classify[") for s in fams["videoclf_stage_busy_seconds"].samples)
        assert "videoclf_dropped_frames" in fams and "videoclf_processed_fps" in fams
        # and disk use: output.dir's free space as the sink reads it, nothing paused or deleted
        free = fams["videoclf_output_free_bytes"].samples
        assert free and free[0].value > 0
        assert {s.labels["output"]: s.value for s in fams["videoclf_output_paused"].samples} == \
            {"video": 0.0, "labels": 0.0}
        assert {s.labels["kind"]: s.value for s in fams["videoclf_retention_deleted_files"].samples
                if s.name.endswith("_total")} == {"labels": 0, "events": 0, "video": 0, "snapshots": 0, "clips": 0}
        # and the web state has the stream, its status and real labels
        row = state["streams"][0]
        assert row["name"] == "bbb" and row["status"] == "live" and len(row["top"]) == 3
        # and the picture comes with the labels of the frame it shows (regression: the page put the
        # newest frame's labels under an older picture)
        pictured = json.loads((tmp_path / "out" / "live" / "bbb.json").read_text())
        assert pictured["seq"] >= 0 and len(pictured["top"]) == 3
        # and an uploaded frame comes back with a top-3
        jpeg = (tmp_path / "out" / "live" / "bbb.jpg").read_bytes()
        up = json.loads(get(f"{web}/api/classify", jpeg, timeout=180))  # first upload loads the model
        assert len(up["top"]) == 3 and all(0 <= t["score"] <= 1 for t in up["top"])
        assert cv2.imdecode(__import__("numpy").frombuffer(jpeg, "uint8"), cv2.IMREAD_COLOR).shape[0] == 360
        # and headless Chromium renders the page with the stream name and its labels (screenshot kept)
        if chromium() is None:
            pytest.skip("chromium is not installed (.ci/run installs it)")
        dom = headless(web + "/", "--dump-dom").stdout
        assert "bbb" in dom and "fps" in dom
        assert any(str(lbl) in dom for lbl, _ in row["top"]) or "class=\"label\"" in dom
        shot = tmp_path / "web_view.png"
        headless(web + "/", f"--screenshot={shot}")
        assert shot.exists() and shot.stat().st_size > 5000
    finally:
        interrupt(proc)
    assert proc.returncode == 0


def test_a_bad_web_address_is_a_one_line_config_error(write_config, tmp_path, video_factory):
    # given a config whose web address is not HOST:PORT
    cfg = write_config([{"name": "a", "source": str(video_factory())}],
                       output={"dir": str(tmp_path / "out"), "web": "localhost:http"})
    # when it is validated, then one line names the key, and the exit code is 2
    res = run_cli("validate", str(cfg), "--no-sources")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "output.web" in res.stderr and "Traceback" not in res.stderr


def test_a_taken_metrics_port_is_a_clear_error(write_config, tmp_path, video_factory):
    # given a port already bound by someone else
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cfg = write_config([{"name": "a", "source": str(video_factory())}], model={"weights": "none"})
        # when a run asks for it, then it stops at once with one line and exit code 2
        res = run_cli("run", str(cfg), "-q", "--metrics", str(busy.getsockname()[1]))
    assert res.returncode == 2, res.stderr
    assert "output.metrics: cannot listen on 127.0.0.1" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("text,want", [("9100", ("127.0.0.1", 9100)), (":8080", ("127.0.0.1", 8080)),
                                       ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:81", ("::1", 81))])
def test_listen_addresses_default_to_loopback(text, want):
    # regression: "18932" was read as host "1893", port 2
    from videoclf.config.outputs import parse_address

    assert parse_address(text) == want
