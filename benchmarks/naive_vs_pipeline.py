"""The seeds' naive loop vs `videoclf run` on the same 1080p30 H.264 clip, in one run.

Usage (run by hand, not in CI; quote medians, the machine may be shared):
    python benchmarks/naive_vs_pipeline.py [--repeat 3] [--backbones resnet18,mobilenet_v2]

The clip (20 s, 1920x1080, 30 fps, 1 s GOP, no B-frames) is generated once from the shipped
sample upscaled to 1080p (real content, not a synthetic pattern) into benchmarks/results/.
Both sides use random weights (`weights: none`): speed does not depend on the values, and
torchvision's pretrained weights are not available offline.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE = ROOT / "samples" / "bigbuckbunny_360p.mp4"
TARGETS = {"resnet18": 3.5, "mobilenet_v2": 5.0}  # the ratio targets


def make_clip(path: Path, seconds: int = 20, fps: int = 30, size: tuple[int, int] = (1920, 1080)) -> Path:
    """H.264 at ``size`` (1080p by default), GOP = 1 s, no B-frames: the sample looped and
    scaled by libswscale, so the content is real, not a synthetic pattern."""
    import av

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(SAMPLE)) as src:
        frames = [f.reformat(width=size[0], height=size[1], format="yuv420p") for f in src.decode(video=0)]
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as dst:
        v = dst.add_stream("libx264", rate=Fraction(fps, 1))
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.options = {"g": str(fps), "bf": "0", "crf": "23", "preset": "veryfast"}
        for i in range(seconds * fps):
            f = frames[i % len(frames)]
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in v.encode(f):
                dst.mux(p)
        for p in v.encode():
            dst.mux(p)
    os.replace(tmp, path)
    return path


def naive_fps(clip: Path, backbone: str, max_frames: int) -> float:
    """OpenCV read → PIL → Resize(256) → CenterCrop(224) → ToTensor → Normalize → fp32 eager
    batch 1 → softmax top-3, exactly the seeds' code path. Model load is not timed."""
    import cv2
    import torch
    import torchvision.models as tvm
    from PIL import Image
    from torchvision import transforms

    torch.manual_seed(0)
    model = tvm.get_model(backbone, weights=None).eval()
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    cap = cv2.VideoCapture(str(clip))
    n = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        while n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            img = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            probs = model(tf(img).unsqueeze(0)).softmax(dim=1)
            probs.topk(3)
            n += 1
    elapsed = time.perf_counter() - t0
    cap.release()
    return n / elapsed


def pipeline_fps(clip: Path, backbone: str, max_frames: int, extra: dict) -> tuple[float, dict]:
    """`videoclf run` in a subprocess, null sink; FPS is the sink's sustained rate."""
    import yaml

    with tempfile.TemporaryDirectory(prefix="vclf_bench_") as tmp:
        cfg = {"streams": [{"name": "clip", "source": str(clip)}],
               "model": {"backbone": backbone, "weights": "none", **extra},
               "output": {"dir": tmp}, "max_frames": max_frames}
        path = Path(tmp) / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path), "--null-sink", "-q"],
                              capture_output=True, text=True, env=env, timeout=900, cwd=str(ROOT))
        if proc.returncode != 0:
            raise SystemExit(f"videoclf run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        report = json.loads((Path(tmp) / "report.json").read_text())
    return report["streams"]["clip"]["sustained_fps"], report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="resnet18,mobilenet_v2")
    ap.add_argument("--repeat", type=int, default=3, help="alternate naive/pipeline runs; medians are quoted")
    ap.add_argument("--naive-frames", type=int, default=300, help="frames the naive loop times (it is slow)")
    ap.add_argument("--frames", type=int, default=600, help="frames the pipeline classifies (600 = the whole clip)")
    ap.add_argument("--model", default="{}", help='extra model config as JSON, e.g. \'{"backend": "openvino"}\'')
    args = ap.parse_args()
    clip = make_clip(RESULTS / "clip_1080p30_gop30.mp4")
    extra = json.loads(args.model)
    print(f"clip: {clip.relative_to(ROOT)}  cores: {len(os.sched_getaffinity(0))}  model extra: {extra}")
    rows = []
    for backbone in args.backbones.split(","):
        naive, pipe = [], []
        for r in range(args.repeat):  # back to back, so both sides see the same machine load
            naive.append(naive_fps(clip, backbone, args.naive_frames))
            fps, report = pipeline_fps(clip, backbone, args.frames, extra)
            pipe.append(fps)
            print(f"  {backbone} run {r + 1}: naive {naive[-1]:.1f} FPS, videoclf {fps:.1f} FPS "
                  f"(bottleneck {report['bottleneck']}, {report['model'].get('backend', 'torch')} "
                  f"{report['model'].get('precision')})", flush=True)
        n, p = statistics.median(naive), statistics.median(pipe)
        target = TARGETS.get(backbone)
        verdict = "" if target is None else (f"target ≥{target}×: " + ("met" if p / n >= target else "NOT met"))
        rows.append(f"{backbone:14s} naive {n:6.1f} FPS   videoclf {p:6.1f} FPS   ratio {p / n:4.2f}×   {verdict}")
    print("\nmedians:")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
