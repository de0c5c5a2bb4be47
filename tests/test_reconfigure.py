"""Cameras added, changed and removed while a run goes on: the config file edited (or SIGHUP),
and the HTTP API, which writes the file. Real RTSP cameras (GStreamer on 127.0.0.1), the real
multiprocess pipeline through the CLI; the model and the other cameras are never touched."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, make_video, read_jsonl
from helpers_proc import line_count, wait_for
from live_helpers import free_port, needs_gst, serving
from videoclf.devtools.testing import stage_processes

pytestmark = [needs_gst, pytest.mark.slow]

FAST = {"watchdog_s": 2, "backoff_s": 0.2, "backoff_max_s": 1, "open_timeout_s": 2, "read_timeout_s": 2}
MODEL = {"backbone": "mobilenet_v2", "weights": "none", "precision": "fp32", "threads": 1}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "cam.mp4", 320, 180, frames=60, fps=15, gop=15)


def cam(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "source": url, "live": FAST, **extra}


def save(path: Path, data: dict[str, Any]) -> None:
    """As an editor saves: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


def start(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "--duration", "120", *args],
                            cwd=str(ROOT), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def logged(out: Path, name: str) -> int:
    p = out / f"{name}.jsonl"
    return line_count(p) if p.exists() else 0


def pids(proc: subprocess.Popen[str]) -> dict[str, int]:
    return {title: p.pid for title, p in stage_processes(proc.pid).items()}


def classifier(p: dict[str, int]) -> int:
    return next(pid for title, pid in p.items() if title.startswith("classify["))


def max_gap(out: Path, name: str, since: float, until: float) -> float:
    times = [r["time"] for r in read_jsonl(out / f"{name}.jsonl") if since <= r["time"] <= until]
    assert len(times) > 10, (name, len(times))
    return max(b - a for a, b in zip(times, times[1:]))


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    return err


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_cameras_added_by_an_edit_and_the_api_and_removed_by_the_api_leave_the_others_running(tmp_path, clip):
    out, port = tmp_path / "out", free_port()
    with serving(clip) as camera:
        cams = [camera() for _ in range(5)]
        data = {"streams": [cam(f"c{i}", cams[i].url()) for i in range(3)], "model": MODEL,
                "output": {"dir": str(out), "web": f"127.0.0.1:{port}"}}
        cfg = tmp_path / "cams.yaml"
        save(cfg, data)
        proc = start(cfg)
        try:
            wait_for(lambda: all(logged(out, f"c{i}") for i in range(3)), 120, "the three cameras' first labels")
            t_start, before = time.time(), pids(proc)
            time.sleep(2)
            # a fourth camera, added by editing the file
            data["streams"].append(cam("c3", cams[3].url()))
            save(cfg, data)
            t = time.monotonic()
            wait_for(lambda: logged(out, "c3"), 10, "c3's first label after the edit")
            edit_s = time.monotonic() - t
            # a fifth, added through the API
            t = time.monotonic()
            code, _ = http("POST", f"http://127.0.0.1:{port}/api/streams", cam("c4", cams[4].url()))
            assert code == 201
            wait_for(lambda: logged(out, "c4"), 10, "c4's first label after the POST")
            post_s = time.monotonic() - t
            time.sleep(2)
            # one removed through the API: its decoder is gone within 5 s
            t_remove = time.time()
            code, _ = http("DELETE", f"http://127.0.0.1:{port}/api/streams/c0")
            assert code in (200, 204)
            t = time.monotonic()
            wait_for(lambda: "decode[c0]" not in pids(proc), 5, "decode[c0] gone")
            gone_s = time.monotonic() - t
            time.sleep(3)
            t_end, after = time.time(), pids(proc)
            code, listed = http("GET", f"http://127.0.0.1:{port}/api/streams")
        finally:
            err = stop(proc) if proc.poll() is None else proc.communicate()[1]
    print(f"c3 logged {edit_s:.1f} s after the edit, c4 {post_s:.1f} s after the POST, decode[c0] gone "
          f"{gone_s:.1f} s after the DELETE")
    # the model was never reloaded: the same classifier process throughout
    assert classifier(after) == classifier(before)
    assert after["decode[c1]"] == before["decode[c1]"] and after["decode[c2]"] == before["decode[c2]"]
    # the running cameras never paused: no gap over 1 s between their labels
    gaps = {name: max_gap(out, name, t_start, t_end) for name in ("c1", "c2")}
    gaps["c0"] = max_gap(out, "c0", t_start, t_remove)
    print("largest gap between labels (s):", {k: round(v, 3) for k, v in gaps.items()})
    assert all(g <= 1.0 for g in gaps.values()), gaps
    # the API lists what runs; the file holds what the API did, so a restart keeps it
    assert code == 200 and sorted(s["name"] for s in listed["streams"]) == ["c1", "c2", "c3", "c4"]
    assert [s["name"] for s in yaml.safe_load(cfg.read_text())["streams"]] == ["c1", "c2", "c3", "c4"]
    report = json.loads((out / "report.json").read_text())
    assert report["streams"]["c0"]["end"] == "removed"
    changes = [(c["added"], c["removed"]) for c in report["changes"]]
    assert changes == [(["c3"], []), (["c4"], []), ([], ["c0"])], report["changes"]
    assert all(report["streams"][f"c{i}"]["frames"] > 0 for i in range(1, 5))
    assert "Traceback" not in err


def test_a_changed_camera_restarts_alone_and_an_invalid_edit_changes_nothing(tmp_path, clip):
    out = tmp_path / "out"
    with serving(clip) as camera:
        cams = [camera() for _ in range(2)]
        data = {"streams": [cam("a", cams[0].url()), cam("b", cams[1].url())], "model": MODEL,
                "output": {"dir": str(out)}}
        cfg = tmp_path / "cams.yaml"
        save(cfg, data)
        proc = start(cfg, "--no-watch")  # SIGHUP only
        try:
            wait_for(lambda: logged(out, "a") and logged(out, "b"), 120, "first labels")
            before = pids(proc)
            # an unknown key and a model change: one line naming the file, line and key; nothing changes
            cfg.write_text(cfg.read_text().replace("name: b", "name: b\n  colour: red"))
            proc.send_signal(signal.SIGHUP)
            time.sleep(2)
            assert pids(proc) == before
            # stream b changed (more slots), and the model too: b's decoder alone restarts
            data["streams"][1]["ring_slots"] = 12
            data["model"] = {**MODEL, "top_k": 5}
            save(cfg, data)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: pids(proc).get("decode[b]") not in (None, before["decode[b]"]), 10, "decode[b] restarted")
            n = logged(out, "b")
            wait_for(lambda: logged(out, "b") > n + 15, 20, "b logging again")
            after = pids(proc)
        finally:
            err = stop(proc) if proc.poll() is None else proc.communicate()[1]
    warnings = [line for line in err.splitlines() if "not applied" in line]
    assert len(warnings) == 1 and f"{cfg}:" in warnings[0] and "streams.1.colour: unknown key" in warnings[0], err
    assert sum("model changed: this takes a restart" in line for line in err.splitlines()) == 1, err
    assert after["decode[a]"] == before["decode[a]"] and classifier(after) == classifier(before)
    frames = [r["frame"] for r in read_jsonl(out / "b.jsonl")]
    assert frames == sorted(set(frames))  # numbering went on: no frame logged twice
    assert all(len(r["top"]) == 3 for r in read_jsonl(out / "b.jsonl"))  # the running model's top_k kept


def _mp4_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_a_file_added_to_a_running_run_gets_its_log_and_video_and_is_not_run_again_once_complete(tmp_path):
    # given a run of a looping file with annotated video
    out = tmp_path / "out"
    loop = make_video(tmp_path / "loop.mp4", 160, 96, frames=30, fps=30)
    short = make_video(tmp_path / "short.mp4", 128, 96, frames=45, fps=30)
    data = {"streams": [{"name": "a", "source": str(loop), "loop": True}], "model": MODEL,
            "output": {"dir": str(out), "video": True}}
    cfg = tmp_path / "files.yaml"
    save(cfg, data)
    proc = start(cfg)
    try:
        wait_for(lambda: logged(out, "a") > 30, 120, "a's labels")
        # when a short file is added
        data["streams"].append({"name": "b", "source": str(short)})
        save(cfg, data)
        wait_for(lambda: logged(out, "b") == 45, 30, "b's 45 labels")
        # and removed, then added again: its log is complete, so it is not classified again
        save(cfg, {**data, "streams": data["streams"][:1]})
        time.sleep(1.5)
        save(cfg, data)
        time.sleep(2)
        n_a = logged(out, "a")
    finally:
        err = stop(proc)
    assert "stream b: not classified again" in err, err
    assert [r["frame"] for r in read_jsonl(out / "b.jsonl")] == list(range(45))
    # b's annotated video holds its 45 frames, and a's video went on in its one file
    b_videos, a_videos = sorted(out.glob("b*.mp4")), sorted(out.glob("a*.mp4"))
    assert len(b_videos) == 1 and _mp4_frames(b_videos[0]) == 45
    assert len(a_videos) == 1 and _mp4_frames(a_videos[0]) >= n_a - 5


def test_the_api_refuses_what_the_config_could_not_hold_and_leaves_the_file_alone(tmp_path):
    out, port = tmp_path / "out", free_port()
    loop = make_video(tmp_path / "loop.mp4", 96, 64, frames=30, fps=30)
    data = {"streams": [{"name": "a", "source": str(loop), "loop": True}], "model": MODEL,
            "output": {"dir": str(out), "web": f"127.0.0.1:{port}"}}
    cfg = tmp_path / "files.yaml"
    save(cfg, data)
    text = cfg.read_text()
    proc = start(cfg, "-q")
    try:
        wait_for(lambda: logged(out, "a") > 10, 120, "a's labels")
        api = f"http://127.0.0.1:{port}/api/streams"
        answers = [http("POST", api, {"name": "b", "source": str(tmp_path / "missing.mp4")}),  # no such file
                   http("POST", api, {"name": "b", "source": str(loop), "ring_slots": 1}),  # out of range
                   http("POST", api, {"name": "a", "source": str(loop)}),  # taken
                   http("DELETE", f"{api}/zz"),  # unknown
                   http("DELETE", f"{api}/a")]  # the last stream: a run needs one
        n = logged(out, "a")
        wait_for(lambda: logged(out, "a") > n + 10, 20, "a going on")
    finally:
        err = stop(proc)
    assert [code for code, _ in answers] == [400, 400, 409, 404, 409], answers
    assert "missing.mp4" in answers[0][1] and "ring_slots" in answers[1][1]
    assert cfg.read_text() == text  # nothing was written
    assert err.strip().splitlines() == [  # -q: no warning but the interrupt's, no traceback
        "videoclf: warning: SIGINT: finishing in-flight frames and writing the report (again to abort)"], err
