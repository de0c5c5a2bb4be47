"""The Python API end to end: real runs (generated clips, the shipped sample, a real RTSP
camera), results checked against the label logs the same runs wrote."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import videoclf
from conftest import FAST_MODEL, ROOT, make_video, read_jsonl
from live_helpers import needs_gst, serving
from videoclf.core.errors import ConfigError
from videoclf.devtools.testing import stage_processes


def _cfg(tmp_path: Path, streams: list[dict[str, Any]]) -> dict[str, Any]:
    return {"streams": streams, "model": FAST_MODEL, "output": {"dir": str(tmp_path / "out")}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "c.mp4", 96, 64, frames=240, fps=30)


def _log(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    return read_jsonl(tmp_path / "out" / f"{name}.jsonl")


def test_the_readme_example_yields_one_result_per_logged_frame(tmp_path, monkeypatch, capsys):
    # given the README's example, run verbatim from an unrelated directory
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- python-api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md lost its python-api-example block"
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), ns)
    # then it printed one line per frame of the label log it wrote, with the log's best label
    printed = [ln for ln in capsys.readouterr().out.splitlines() if " frame " in ln]
    logged = read_jsonl(Path(ns["out"]) / "bbb.jsonl")
    assert len(logged) > 100
    assert [int(ln.split()[2]) for ln in printed] == [r["frame"] for r in logged]
    assert all(f": {r['top'][0]['label']} (" in ln for ln, r in zip(printed, logged))
    report = ns["report"]
    assert report.ok and report.streams["bbb"].frames == len(logged) and ns["run"].dropped == 0
    assert json.loads((Path(ns["out"]) / "report.json").read_text())["api"]["dropped"] == {"bbb": 0}


def test_results_carry_what_the_label_log_holds(tmp_path, clip):
    results = list(videoclf.start(_cfg(tmp_path, [{"name": "a", "source": str(clip)}]), max_frames=40))
    logged = _log(tmp_path, "a")
    assert len(results) == 40
    assert [(r.stream, r.frame, round(r.pts, 6), round(r.time, 6)) for r in results] == \
        [(x["stream"], x["frame"], x["pts"], x["time"]) for x in logged]
    assert [[(t.label, t.probability) for t in r.top] for r in results] == \
        [[(t["label"], t["score"]) for t in x["top"]] for x in logged]
    assert all(r.smoothed is None and r.top[0].index >= 0 for r in results)
    with pytest.raises(Exception):  # frozen
        results[0].frame = 3  # type: ignore[misc]


def test_a_smoothing_stream_s_results_carry_the_smoothed_top_1_its_log_holds(tmp_path, clip):
    # given two streams, one smoothing its labels over 5 frames
    cfg = _cfg(tmp_path, [{"name": "a", "source": str(clip), "smooth": {"window": 5}},
                          {"name": "b", "source": str(clip)}])
    results = list(videoclf.start(cfg, max_frames=20))
    # then each of its results has the smoothed label and score of its log line, with its class index
    logged = {(x["stream"], x["frame"]): x for n in ("a", "b") for x in _log(tmp_path, n)}
    got = {(r.stream, r.frame): r for r in results}
    assert len(got) == len(logged) == 40
    for key, r in got.items():
        line = logged[key]
        if r.stream == "a":
            assert r.smoothed is not None and r.smoothed.index >= 0
            assert (r.smoothed.label, r.smoothed.probability) == (line["smoothed"]["label"], line["smoothed"]["score"])
        else:
            assert r.smoothed is None and "smoothed" not in line


def test_a_sleeping_callback_does_not_slow_the_run_and_its_drops_are_counted(tmp_path, clip):
    calls: list[int] = []

    def slow(r: videoclf.Result) -> None:
        time.sleep(0.1)
        calls.append(r.frame)

    # when each result costs the consumer 0.1 s (24 s for the clip)
    report = videoclf.run(_cfg(tmp_path, [{"name": "a", "source": str(clip)}]), on_result=slow, queue_size=4)
    # then the pipeline went at its own pace: every frame logged, well before the consumer could finish
    frames = len(_log(tmp_path, "a"))
    assert frames == 240 and report.streams["a"].frames == 240
    assert report.elapsed_s < 240 * 0.1 / 2
    # and what the consumer missed is counted, on the report and in report.json
    assert report.results_dropped > 0 and len(calls) + report.results_dropped == frames
    assert report.streams["a"].results_dropped == report.results_dropped
    assert report.data["api"]["dropped"] == {"a": report.results_dropped}
    assert calls == sorted(calls)


def test_lossless_delivers_every_file_frame_to_a_slow_consumer(tmp_path, clip):
    got: list[int] = []
    report = videoclf.run(_cfg(tmp_path, [{"name": "a", "source": str(clip)}]), max_frames=60, queue_size=2,
                          lossless=True, on_result=lambda r: (time.sleep(0.01), got.append(r.frame)))
    assert got == [x["frame"] for x in _log(tmp_path, "a")] and len(got) == 60
    assert report.results_dropped == 0


def test_the_api_runs_from_another_thread_and_leaves_signal_handlers_alone(tmp_path, clip):
    before = signal.getsignal(signal.SIGINT)
    box: dict[str, Any] = {}

    def work() -> None:
        with videoclf.start(_cfg(tmp_path, [{"name": "a", "source": str(clip)}]), max_frames=30) as run:
            box["frames"] = [r.frame for r in run]
        box["report"] = run.report

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert not t.is_alive()
    assert box["frames"] == [x["frame"] for x in _log(tmp_path, "a")] and len(box["frames"]) == 30
    assert box["report"].ok and signal.getsignal(signal.SIGINT) is before


@needs_gst
def test_a_camera_yields_results_while_it_runs_and_stops_cleanly(tmp_path, clip):
    live = {"watchdog_s": 2, "backoff_s": 0.2, "open_timeout_s": 5, "read_timeout_s": 2}
    with serving(clip) as start_camera:
        cam = start_camera()
        run = videoclf.start(_cfg(tmp_path, [{"name": "cam", "source": cam.url(), "live": live}]))
        with run:
            seen = []
            for r in run.results(timeout=120):
                seen.append(r)
                if len(seen) == 20:
                    assert not run.done  # results arrive while the camera runs
                    kids = stage_processes(os.getpid())
                    run.stop()
        report = run.report
    assert len(seen) >= 20 and report.interrupted and report.streams["cam"].end == "stopped"
    assert [r.frame for r in seen] == [x["frame"] for x in _log(tmp_path, "cam")][: len(seen)]
    assert kids and not any(p.is_running() and p.status() != "zombie" for p in kids.values())


def test_a_bad_option_or_config_is_refused_at_start(tmp_path):
    with pytest.raises(TypeError, match="max_frame"):
        videoclf.start("sample", max_frame=3)
    with pytest.raises(ConfigError):
        videoclf.start({"streams": [{"name": "a", "source": "x.mp4", "colour": 1}]})


def test_import_videoclf_loads_no_heavy_module():
    code = "import sys, videoclf; videoclf.Result; print(sorted({'torch', 'av', 'cv2'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_results_survive_a_sink_restart_each_frame_once(tmp_path):
    # given a lossless run whose consumer paces the sink, with restarts on
    clip = make_video(tmp_path / "long.mp4", 96, 64, frames=600, fps=30)
    cfg = {**_cfg(tmp_path, [{"name": "a", "source": str(clip)}]), "supervision": {"restart": True}}
    frames: list[int] = []
    with videoclf.start(cfg, lossless=True, queue_size=8) as run:
        for r in run.results(timeout=120):
            frames.append(r.frame)
            time.sleep(0.005)
            if len(frames) == 50:
                # when the sink process is SIGKILLed mid-run
                sink = next(p for t, p in stage_processes(os.getpid()).items() if t.startswith("sink["))
                sink.send_signal(signal.SIGKILL)
    # then the rebuilt sink's results came through the same tap: every frame once, in order
    assert run.report.ok and run.report.data["restarts"]
    assert frames == [x["frame"] for x in _log(tmp_path, "a")] == list(range(600))
