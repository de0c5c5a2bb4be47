"""Live-camera targets, run by hand (not a test):

  1. N (default 3) 640x360 30 FPS cameras → each sustains >= 29 FPS with zero drops;
  2. one 1080p30 camera → end-to-end latency (decoded → label written) p95 <= 100 ms.

Cameras are served by `videoclf serve` (GStreamer, loopback) from the shipped sample scaled
to the camera size (benchmarks/results/, made once). The baseline printed beside each figure is the target and the camera's own rate
measured in the same run (input FPS), so the ratio says how much of the camera we kept.

  .venv/bin/python benchmarks/live_cameras.py [--cameras 3] [--seconds 30]
  # how many 1080p30 cameras mobilenet_v2 keeps at 30 FPS with zero drops:
  .venv/bin/python benchmarks/live_cameras.py --size 1920x1080 --cameras 6 \
      --backbone mobilenet_v2 --skip-latency
  # the most 1080p30 cameras held (>= 29 FPS each, zero drops) beside the machine limit:
  .venv/bin/python benchmarks/live_cameras.py --find-max --backbone mobilenet_v2 \
      --set precision=fp32 [--repeat 3]

--find-max measures, in the same run, the machine limit in cameras:
  cores / (30 x (decode + inference core-seconds per frame)). Decode: a decode-only pass of one
  camera (PyAV over RTSP, one FFmpeg thread, the crop and resize videoclf does), 300 frames as
  the camera sends them; a frame that arrives every 33 ms costs more than one of a file decoded
  back to back (cold caches: 4.0 against 2.8 ms on EPYC-Z5), and every live loop pays that, so
  the file's figure would overstate the limit. It also prints that file figure. Inference: the
  engine videoclf uses at its best batch size with every request busy
  (benchmarks/naive_vs_pipeline.py). Then it runs N cameras from floor(limit) + 1 downwards
  until N is held in most of --repeat runs, and prints the held count beside the limit. The
  camera servers run on the same cores (not counted in the limit), so the figure is
  conservative.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from naive_vs_pipeline import RESULTS, make_clip  # noqa: E402
from videoclf.config.load import parse_config  # noqa: E402
from videoclf.supervision.supervisor import RunOptions, run_pipeline  # noqa: E402
from videoclf.devtools.testing import Camera  # noqa: E402


def run(urls: dict[str, str], seconds: float, out: Path, model: dict) -> dict:
    cfg = parse_config({"streams": [{"name": n, "source": u} for n, u in urls.items()],
                        "model": model, "output": {"dir": str(out)}})
    result = run_pipeline(cfg, RunOptions(duration=seconds, sink="null", progress=False))
    if result.error:
        raise SystemExit(f"run failed: {result.error}")
    return result.report


def held(rep: dict) -> bool:
    return all(s["sustained_fps"] >= 29 and s["dropped"] == 0 for s in rep["streams"].values())


def live_decode_core_s(url: str, crop: int, frames: int = 300, warmup: int = 30) -> float:
    """Decode-only pass of one camera: process CPU s / frame, frames taken as the camera sends them."""
    import time

    import av

    from videoclf.stages.decode.file import DecodeConfig, to_model_rgb

    geometry = DecodeConfig("limit", url, round(crop * 256 / 224), crop)
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        n, cpu0 = 0, 0.0
        for frame in container.decode(stream):
            to_model_rgb(frame, geometry)
            n += 1
            if n == warmup:
                cpu0 = time.process_time()
            if n == warmup + frames:
                return (time.process_time() - cpu0) / frames
    raise RuntimeError(f"{url}: the camera ended after {n} frames")


def camera_limit(clip: Path, model_file: str, precision: str, crop: int) -> dict:
    from handwritten import cores
    from naive_vs_pipeline import best_batch_infer_core_s, cropping_decode_core_s

    cam = Camera(clip).start()
    try:
        dec = live_decode_core_s(cam.url(), crop)
    finally:
        cam.kill()
    file_dec = cropping_decode_core_s(str(clip), 300, crop)
    inf = best_batch_infer_core_s(model_file, precision, crop)
    return {"decode_core_s": dec, "file_decode_core_s": file_dec, "infer_core_s": inf,
            "cameras": cores() / (30 * (dec + inf)), "cameras_file_decode": cores() / (30 * (file_dec + inf))}


def find_max(args: argparse.Namespace, model: dict, t: Path) -> int:
    """The most 1080p30 cameras held, beside the machine limit measured in the same run."""
    from handwritten import cpu_info, describe_cpu

    print(describe_cpu(cpu_info()))
    big = make_clip(RESULTS / "clip_1080p30_gop30.mp4")
    cams = [Camera(big).start()]
    try:  # priming run: exports the model, names its file and precision
        rep = run({"cam0": cams[0].url()}, 5, t / "prime", model)
    finally:
        cams[0].kill()
    m = rep["model"]
    lim = camera_limit(big, m["model_file"], m["precision"], int(model.get("input_size", 224)))
    print(f"{args.backbone} {m['precision']}: live decode {lim['decode_core_s'] * 1e3:.2f} ms + inference "
          f"{lim['infer_core_s'] * 1e3:.2f} ms core time per frame -> machine limit {lim['cameras']:.2f} cameras "
          f"(with the file's back-to-back decode, {lim['file_decode_core_s'] * 1e3:.2f} ms: "
          f"{lim['cameras_file_decode']:.2f})", flush=True)
    n, best = int(lim["cameras"]) + 1, 0
    while n >= 1:
        verdicts = []
        for r in range(args.repeat):
            cams = [Camera(big).start() for _ in range(n)]
            try:
                rep = run({f"cam{i}": c.url() for i, c in enumerate(cams)}, args.seconds, t / f"n{n}r{r}", model)
            finally:
                for c in cams:
                    c.kill()
            verdicts.append(held(rep))
            fps = [s["sustained_fps"] for s in rep["streams"].values()]
            drops = [s["dropped"] for s in rep["streams"].values()]
            print(f"  {n} cameras, run {r + 1}: FPS {min(fps):.1f}-{max(fps):.1f}, dropped {min(drops)}-{max(drops)}, "
                  f"classify busy {next(v for k, v in rep['stages'].items() if k.startswith('classify'))['busy_fraction']:.2f}"
                  f"  {'held' if verdicts[-1] else 'not held'}")
        if sum(verdicts) * 2 > len(verdicts):
            best = n
            break
        n -= 1
    ok = best >= int(lim["cameras"]) - 1
    print(f"held {best} cameras; machine limit {lim['cameras']:.2f} (target: within one camera of the limit, "
          f">= {int(lim['cameras']) - 1})  {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--find-max", action="store_true", help="most 1080p30 cameras held, beside the machine limit")
    ap.add_argument("--repeat", type=int, default=1, help="--find-max: runs per camera count (majority decides)")
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", default="640x360", help="WxH of the N cameras (e.g. 1920x1080)")
    ap.add_argument("--skip-latency", action="store_true", help="skip the single-1080p latency part")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra model setting, e.g. --set threads=1 (repeatable)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    model = {"backbone": args.backbone, "weights": "imagenet" if args.backbone == "efficientnet_lite0" else "none",
             **dict(kv.split("=", 1) for kv in args.set)}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if args.find_max:
            return find_max(args, model, t)
        # real content (the shipped sample, scaled): a synthetic pattern decodes too cheaply
        big = make_clip(RESULTS / "clip_1080p30_gop30.mp4")
        small = make_clip(RESULTS / f"clip_{width}x{height}_30fps.mp4", seconds=10, size=(width, height))
        cams = [Camera(small).start() for _ in range(args.cameras)]
        try:
            rep = run({f"cam{i}": c.url() for i, c in enumerate(cams)}, args.seconds, t / "a", model)
        finally:
            for c in cams:
                c.kill()
        print(f"{args.cameras} x {width}x{height}@30 cameras, {args.backbone}, {args.seconds:g} s "
              f"(bottleneck {rep['bottleneck']}):")
        stages = rep["stages"]
        cls = next(v for k, v in stages.items() if k.startswith("classify"))
        dec = [v["busy_fraction"] for k, v in stages.items() if k.startswith("decode")]
        print(f"  classify busy {cls['busy_fraction']:.2f}, mean batch {cls['items'] / max(cls.get('batches', 0), 1):.1f}; "
              f"decode busy (mean of streams) {sum(dec) / max(len(dec), 1):.2f}")
        print("  dropped where (report.json dropped_by): " + ", ".join(
            f"{n} {'/'.join(f'{k} {v}' for k, v in s['dropped_by'].items())}" for n, s in rep["streams"].items()))
        ok = True
        for name, s in rep["streams"].items():
            good = s["sustained_fps"] >= 29 and s["dropped"] == 0
            ok &= good
            print(f"  {name}: sustained {s['sustained_fps']:.1f} FPS / input {s['input_fps']:.1f} FPS "
                  f"(ratio {s['sustained_fps'] / max(s['input_fps'], 1e-9):.2f}; target >= 29, 0 drops) "
                  f"dropped {s['dropped']}, e2e p95 {s['latency_ms']['p95']} ms  {'OK' if good else 'MISS'}")
        if args.skip_latency:
            return 0 if ok else 1
        cam = Camera(big).start()
        try:
            rep = run({"hd": cam.url()}, args.seconds, t / "b", model)
        finally:
            cam.kill()
        s = rep["streams"]["hd"]
        p95 = s["latency_ms"]["p95"]
        good = p95 is not None and p95 <= 100
        ok &= good
        print(f"1 x 1920x1080@30 camera: e2e p95 {p95} ms (target <= 100 ms, ratio {(p95 or 0) / 100:.2f}), "
              f"p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms, decode p95 {s['decode_ms']['p95']} ms, "
              f"infer p95 {s['infer_ms']['p95']} ms, sustained {s['sustained_fps']:.1f} FPS, dropped {s['dropped']}  "
              f"{'OK' if good else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
