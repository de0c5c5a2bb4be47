"""`videoclf bench` on the shipped sample with a tiny matrix, and its MAC counter."""
from __future__ import annotations

import csv

import pytest

from conftest import SAMPLE, run_cli
from videoclf.cli.bench import count_macs


def test_count_macs_matches_published_resnet18_figure():
    import torchvision.models as tvm

    # torchvision documents 1.81 GFLOPS (multiply-adds) for resnet18 at 224x224
    assert count_macs(tvm.resnet18().eval(), 224) == pytest.approx(1.81, abs=0.02)


@pytest.mark.slow
def test_bench_on_sample_writes_table_markdown_and_csv(tmp_path):
    # given a tiny matrix: one small backbone, two engines, fp32
    out = tmp_path / "bench"
    proc = run_cli("bench", str(SAMPLE), "--backbones", "mobilenet_v3_small", "--backends", "torch,openvino",
                   "--precisions", "fp32", "--weights", "none", "--frames", "30", "--out", str(out),
                   env={"VIDEOCLF_CACHE": str(tmp_path / "cache")}, timeout=600)
    # then it measures both with the real pipeline and writes every output
    assert proc.returncode == 0, proc.stderr
    assert "pipeline FPS" in proc.stdout
    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert [r["backend"] for r in rows] == ["torch", "openvino"]
    for r in rows:
        assert float(r["pipeline_fps"]) > 0 and float(r["throughput_ips"]) > 0
        assert float(r["top1_agreement"]) >= 0.97  # fp32 engines agree with fp32 torch
        assert "classify=" in r["peak_rss_mb"] and "decode=" in r["peak_rss_mb"]
        assert float(r["gmacs"]) == pytest.approx(0.06, abs=0.01)
    assert (out / "bench.md").read_text().startswith("| backbone | backend |")


def test_bench_on_missing_clip_is_one_line_error(tmp_path):
    proc = run_cli("bench", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "b"))
    assert proc.returncode == 2
    assert "nope.mp4: file not found" in proc.stderr and "Traceback" not in proc.stderr
