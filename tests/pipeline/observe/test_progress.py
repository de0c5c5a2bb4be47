"""What a person sees in a terminal (a real tmux pane): a bar with frames done/total, FPS and
ETA for a file run, and a table per camera for a live run."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SAMPLE, make_video
from live_helpers import needs_gst, serving

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def watch(cmd: list[str], want, timeout: float = 120) -> str:
    """Run ``cmd`` in a fresh 140-column tmux pane; return the first screen for which ``want`` holds."""
    session = f"videoclf-test-{time.monotonic_ns()}"
    line = " ".join(shlex.quote(c) for c in cmd) + "; echo videoclf-exited; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "30", f"cd {ROOT} && env -u COLUMNS -u LINES {line}"],
                   check=True)
    try:
        deadline = time.monotonic() + timeout
        seen, found = "", None
        while time.monotonic() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            seen = screen if screen.strip() else seen
            if found is None and want(screen):
                found = screen
            if "videoclf-exited" in screen:  # the run is over (and cleaned up after itself)
                break
            time.sleep(0.2)
        assert found is not None, f"the terminal never showed what was expected:\n{seen}"
        return found
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_a_file_run_shows_a_bar_with_total_fps_and_eta(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"streams": [{"name": "bbb", "source": str(SAMPLE), "loop": True}],
                                   "max_frames": 1500, "output": {"dir": str(tmp_path / "out")},
                                   "model": {"backbone": "efficientnet_lite0", "weights": "imagenet"}}))
    screen = watch([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg)],
                   lambda s: any("/1500" in ln and "ETA" in ln and "fps" in ln for ln in s.splitlines()))
    bar = next(ln for ln in screen.splitlines() if "/1500" in ln)
    assert bar.startswith("bbb") and "━" in bar


@needs_gst
def test_a_live_run_shows_a_table_with_a_row_per_camera(tmp_path):
    clip = make_video(tmp_path / "cam.mp4", 320, 240, frames=60, fps=30, gop=30)
    with serving(clip) as start:
        cam = start()
        cfg = tmp_path / "live.yaml"
        cfg.write_text(yaml.safe_dump({"streams": [{"name": "door", "source": cam.url()},
                                                   {"name": "yard", "source": cam.url()}],
                                       "output": {"dir": str(tmp_path / "out")},
                                       "model": {"backbone": "efficientnet_lite0", "weights": "imagenet"}}))
        screen = watch([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "--duration", "8"],
                       lambda s: "fps in" in s and "reconnects" in s and all(
                           any(ln.lstrip("│┃ ").startswith(n) and "live" in ln for ln in s.splitlines())
                           for n in ("door", "yard")))
    header = next(ln for ln in screen.splitlines() if "fps in" in ln)
    for col in ("stream", "state", "fps in", "fps out", "frames", "dropped", "reconnects", "label"):
        assert col in header, header
