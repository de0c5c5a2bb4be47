"""The real multiprocess pipeline end to end, through the CLI as users run it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from conftest import ROOT, SAMPLE, read_jsonl, run_cli

FAST_MODEL = {"backbone": "mobilenet_v3_small", "weights": "none"}


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_sample_gives_one_line_per_decoded_frame_and_a_report(tmp_path):
    out = tmp_path / "out"
    res = run_cli("run", "configs/sample.yaml", "--output", str(out))
    assert res.returncode == 0, res.stderr
    lines = read_jsonl(out / "bbb.jsonl")
    assert len(lines) == _decoded_frames(SAMPLE) == 132
    assert [r["frame"] for r in lines] == list(range(132))
    first = lines[0]
    assert set(first) >= {"stream", "frame", "pts", "time", "top"} and first["stream"] == "bbb"
    assert len(first["top"]) == 3 and all(set(t) == {"label", "score"} for t in first["top"])
    assert [round(r["pts"], 3) for r in lines[:3]] == [0.0, 0.04, 0.08]
    assert all(lines[i]["time"] <= lines[i + 1]["time"] for i in range(len(lines) - 1))
    # real weights: Big Buck Bunny's bird is an albatross in ImageNet terms
    assert sum(r["top"][0]["label"] == "albatross" for r in lines) > 30
    report = json.loads((out / "report.json").read_text())
    s = report["streams"]["bbb"]
    assert s["frames"] == 132 and s["dropped"] == 0 and s["decode_errors"] == 0
    assert s["sustained_fps"] > 0 and isinstance(s["meets_target"], bool)
    assert set(s["latency_ms"]) == {"p50", "p95", "p99"} and s["latency_ms"]["p50"] > 0
    assert report["model"]["backbone"] == "efficientnet_lite0" and report["model"]["pretrained"] is True
    assert report["bottleneck"] in report["stages"]
    # every stage reports its own peak RSS (the classifier holds the model: the largest)
    peaks = {t: st["peak_rss_mb"] for t, st in report["stages"].items()}
    assert set(peaks) == {"decode[bbb]", "classify[auto]", "sink[bbb]"} and min(peaks.values()) > 10
    assert max(peaks, key=peaks.get) == "classify[auto]"
    assert "FPS" in res.stdout and "bbb" in res.stdout


CODECS = [  # file, encoder, pixel format, width, height: odd sizes catch H/W mix-ups
    ("a.mp4", "libx264", "yuv420p", 66, 14),
    ("b.mkv", "libvpx-vp9", "yuv420p", 50, 30),
    ("c.avi", "mpeg4", "yuv420p", 48, 32),
    ("d.mov", "libx264", "yuv444p", 33, 7),
    ("e.mkv", "libx265", "yuv420p", 64, 64),
]


def test_many_streams_containers_and_codecs_each_frame_exactly_once(tmp_path, video_factory, write_config):
    streams, expected = [], {}
    for i, (name, codec, pix, w, h) in enumerate(CODECS):
        n = 9 + i
        path = video_factory(name, width=w, height=h, frames=n, codec=codec, pix_fmt=pix)
        streams.append({"name": f"s{i}", "source": str(path)})
        expected[f"s{i}"] = _decoded_frames(path)
        assert expected[f"s{i}"] == n
    cfg = write_config(streams, model={**FAST_MODEL, "max_batch": 4})
    res = run_cli("run", str(cfg))
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["random_weights"] is True
    for name, n in expected.items():
        lines = read_jsonl(tmp_path / "out" / f"{name}.jsonl")
        assert [r["frame"] for r in lines] == list(range(n)), name
        assert all(r["weights"].startswith("none") for r in lines)  # random weights are labelled
        assert report["streams"][name]["frames"] == n


def test_max_frames_and_csv_output(tmp_path, video_factory, write_config):
    path = video_factory(width=48, height=64, frames=20)
    cfg = write_config([{"name": "cam", "source": str(path)}], model=FAST_MODEL, output={"dir": str(tmp_path / "o"), "format": "csv"})
    res = run_cli("run", str(cfg), "--max-frames", "7")
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "o" / "cam.csv").read_text().splitlines()
    assert rows[0] == "stream,frame,pts,time,label1,score1,label2,score2,label3,score3"
    assert [r.split(",")[1] for r in rows[1:]] == [str(i) for i in range(7)]
    assert json.loads((tmp_path / "o" / "report.json").read_text())["streams"]["cam"]["end"] == "limit"


def test_validate_checks_without_running(tmp_path, write_config):
    cfg = write_config([{"name": "cam", "source": str(SAMPLE)}])
    res = run_cli("validate", str(cfg))
    assert res.returncode == 0 and "ok" in res.stdout and "cam" in res.stdout
    assert not (tmp_path / "out").exists()


def test_models_lists_every_backbone():
    res = run_cli("models", "--json")
    rows = {r["backbone"]: r for r in json.loads(res.stdout)}
    assert {"resnet18", "mobilenet_v2", "efficientnet_lite0"} <= set(rows)
    assert rows["efficientnet_lite0"]["input"] == 224


def _truncate(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def test_truncated_file_keeps_every_decodable_frame(tmp_path, video_factory, write_config):
    # given a clip whose index is at the front (faststart) cut off in the middle
    full = video_factory("full.mkv", width=64, height=48, frames=60, gop=10)
    cut = tmp_path / "cut.mkv"
    _truncate(full, cut, 0.5)
    decodable = 0
    with av.open(str(cut)) as c:
        try:
            for _ in c.decode(video=0):
                decodable += 1
        except av.FFmpegError:
            pass
    assert 0 < decodable < 60
    cfg = write_config([{"name": "cut", "source": str(cut)}], model=FAST_MODEL)
    res = run_cli("run", str(cfg))
    assert res.returncode == 0, res.stderr
    lines = read_jsonl(tmp_path / "out" / "cut.jsonl")
    assert len(lines) >= decodable - 1 and [r["frame"] for r in lines] == list(range(len(lines)))


def test_sigint_stops_cleanly_with_flushed_logs_and_a_report(tmp_path, write_config):
    # looped, so the run is still going when the signal comes however fast this machine is
    cfg = write_config([{"name": "bbb", "source": str(SAMPLE), "loop": True}], model=FAST_MODEL)
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "out" / "bbb.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    lines = read_jsonl(log)
    assert report["interrupted"] is True
    assert report["streams"]["bbb"]["frames"] == len(lines) >= 5
    assert [r["frame"] for r in lines] == list(range(len(lines)))


def test_a_warm_start_runs_the_cached_model_without_torch(tmp_path, write_config):
    # given two streams of the real sample and an empty model cache
    streams = [{"name": "a", "source": str(SAMPLE)}, {"name": "b", "source": str(SAMPLE)}]
    model = {"backbone": "efficientnet_lite0", "weights": "imagenet", "backend": "openvino", "precision": "fp32",
             "cache_dir": str(tmp_path / "cache")}
    runs = {}
    for name in ("cold", "warm"):
        cfg = write_config(streams, name=f"{name}.yaml", model=model, output={"dir": str(tmp_path / name)})
        res = run_cli("run", str(cfg), "-q")
        assert res.returncode == 0, res.stderr
        runs[name] = json.loads((tmp_path / name / "report.json").read_text())
    # then the cold run built the model in torch to export it, and measured its batch size
    assert runs["cold"]["model"]["torch_imported"] is True
    assert runs["cold"]["model"]["batch_chosen_by"] == "measured now"
    # and the warm run found the export and the measurement by the weights' content hash alone:
    # the classify process never imported torch, and the engine took the decoders' uint8 frames
    warm = runs["warm"]["model"]
    assert warm["torch_imported"] is False and warm["batch_chosen_by"].startswith("measured (cached")
    assert warm["input_format"] == "uint8 NHWC" and warm["model_file"] == runs["cold"]["model"]["model_file"]
    assert set(runs["warm"]["stages"]) == {"decode[a]", "decode[b]", "classify[auto]", "sink[a,b]"}
    # and both runs classified every frame once with the same top-1
    for name in ("a", "b"):
        cold, warm_rows = (read_jsonl(tmp_path / run / f"{name}.jsonl") for run in ("cold", "warm"))
        assert [r["frame"] for r in warm_rows] == list(range(132))
        assert [r["top"][0]["label"] for r in warm_rows] == [r["top"][0]["label"] for r in cold]


@pytest.mark.parametrize("engine_streams,threads,size", [(1, "auto", "1280x800"), (1, "auto", "sample"),
                                                         (1, "all", "1280x800"), (2, "all", "1280x800")])
def test_one_engine_stream_leaves_a_core_and_its_file_decoder_fewer_threads(tmp_path, write_config, video_factory,
                                                                            engine_streams, threads, size):
    # given one file (1280x800: over a megapixel a frame; or the 360p sample) and OpenVINO with
    # one engine stream (each inference spread over its threads) or two, its threads
    # automatic or set to every core
    from videoclf.plan.budget import decode_threads, usable_cores

    cores = usable_cores()
    source = SAMPLE if size == "sample" else video_factory(width=1280, height=800, frames=24)
    model = {**FAST_MODEL, "backend": "openvino", "precision": "fp32", "engine_streams": engine_streams, "max_batch": 1}
    if threads == "all":
        model["threads"] = cores
    cfg = write_config([{"name": "bbb", "source": str(source)}], model=model)
    # when it runs
    res = run_cli("run", str(cfg), "--max-frames", "20")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # then one engine stream with automatic threads beside large frames left the decoders a
    # core (and says so); beside the small sample it kept them all; threads the config sets are kept
    spared = engine_streams == 1 and threads == "auto" and size != "sample" and cores > 1
    assert report["model"]["streams"] == engine_streams
    assert report["model"]["threads"] == (cores - 1 if spared else cores)
    assert ("a core left to the decoders" in report["model"].get("threads_reason", "")) == spared
    # and beside one engine stream the decoder halved its automatic FFmpeg threads, beside two it kept them
    auto = decode_threads(1)
    want = max(1, auto // 2) if engine_streams == 1 and auto > 1 else auto
    assert report["streams"]["bbb"]["input"]["threads"] == want and report["streams"]["bbb"]["frames"] == 20


def test_split_or_share_follows_what_a_frame_costs_to_decode_and_to_infer():
    from videoclf.plan.budget import split_or_share

    # given 2 cores and an engine whose one-thread speed is half its two-thread speed
    # when decoding and inference cost the same (3 ms a frame each)
    balanced = split_or_share(3e-3, 333.0, 666.0, 2)
    # then a core each wins: neither waits on frame threads or on a preempted stream
    assert balanced.split and balanced.split_fps > balanced.shared_fps
    # when inference costs far more (20 ms), or decoding does (10 ms against 1)
    for decode_s, alone in ((3e-3, 50.0), (10e-3, 1000.0)):
        way = split_or_share(decode_s, alone, 2 * alone, 2)
        # then every core does both: a core of its own would leave the heavy part short
        assert not way.split and way.shared_fps > way.split_fps
    # and the figures measured on a 1080p file (EPYC-Z5) pick what ran faster there
    assert split_or_share(2.89e-3, 494.3, 610.3, 2).split  # efficientnet_lite0 int8: 257 against 222 FPS
    assert not split_or_share(3.41e-3, 207.6, 379.9, 2).split  # efficientnet_lite0 fp32: 168 against 181
    assert not split_or_share(3.24e-3, 69.0, 134.0, 2).split  # resnet18 fp32: 63.5 against 95


def test_an_engine_of_measured_streams_beside_a_large_file_splits_or_shares_the_cores_by_cost(
        tmp_path, write_config, video_factory):
    # given one 1280x800 file and OpenVINO with its streams, batch and threads all automatic
    from videoclf.plan.budget import split_or_share, usable_cores

    cores = usable_cores()
    source = video_factory(width=1280, height=800, frames=24)
    model = {**FAST_MODEL, "backend": "openvino", "precision": "fp32"}
    cfg = write_config([{"name": "bbb", "source": str(source)}], model=model)
    # when it runs
    res = run_cli("run", str(cfg), "--max-frames", "20")
    assert res.returncode == 0, res.stderr[-2000:]
    m = json.loads((tmp_path / "out" / "report.json").read_text())["model"]
    if cores < 2:
        assert "threads_reason" not in m
        return
    if "core_split" not in m:
        # then an engine measured fastest on one stream left the decoder a core, as always
        assert m["streams"] == 1 and m["threads"] == cores - 1 and "one engine stream" in m["threads_reason"]
        return
    # then an engine measured fastest on several streams weighed the file's decode cost (measured
    # on its first frames) against its own speed on every core and on one fewer, and took the
    # faster prediction
    split = m["core_split"]
    assert 0 < split["decode_ms_per_frame"] < 1000
    way = split_or_share(split["decode_ms_per_frame"] / 1e3, split["engine_images_per_s"]["split"],
                         split["engine_images_per_s"]["shared"], cores)
    assert split["predicted_fps"] == {"split": pytest.approx(way.split_fps, rel=0.01),
                                      "shared": pytest.approx(way.shared_fps, rel=0.01)}
    assert m["threads"] == (cores - 1 if way.split else cores)
    assert (m["streams"] == 1) if way.split else (m["streams"] > 1)
    assert ("a core left to the decoder predicts" in m["threads_reason"]) == way.split


def test_a_file_decoded_a_gop_per_thread_is_labelled_like_one_decoded_on_one_thread(tmp_path, write_config,
                                                                                    video_factory):
    # given a file of closed GOPs with B-frames, and a pinned engine (fp32, one thread, batch 1)
    source = video_factory(width=320, height=240, frames=75, options={"g": "10", "bf": "2"})
    model = {**FAST_MODEL, "backend": "openvino", "precision": "fp32", "threads": 1, "max_batch": 1}
    rows, reports = {}, {}
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        cfg = write_config([{"name": "v", "source": str(source), "decode_threads": threads}], model=model,
                           name=f"t{threads}.yaml", output={"dir": str(out)})
        # when it runs with one decode thread, and with two
        res = run_cli("run", str(cfg))
        assert res.returncode == 0, res.stderr[-2000:]
        rows[threads] = read_jsonl(out / "v.jsonl")
        reports[threads] = json.loads((out / "report.json").read_text())
    # then two threads decoded it a GOP each (the report says so), and every frame got the same
    # labels and scores, with the same timestamps, in order
    assert reports[1]["streams"]["v"]["input"]["threads_by"] == "frame"
    assert reports[2]["streams"]["v"]["input"]["threads_by"] == "gop"
    assert [r["frame"] for r in rows[2]] == list(range(75))
    assert [(r["pts"], r["top"]) for r in rows[2]] == [(r["pts"], r["top"]) for r in rows[1]]
