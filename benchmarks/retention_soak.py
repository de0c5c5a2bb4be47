"""A live camera recorded for minutes under a video size limit: what retention kept.

    python benchmarks/retention_soak.py --minutes 3 --max-bytes 2MB --segment-seconds 10

Serves the shipped sample as an RTSP camera (GStreamer, 127.0.0.1), runs `videoclf run` with
annotated video, `segment_seconds` and `output.retention.video.max_bytes`, and prints the files
written and deleted, the total kept against the limit plus one segment, and whether the newest
segments are the ones kept. Prints the CPU first.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

from videoclf.config.outputs import parse_size  # noqa: E402
from videoclf.devtools.testing import gst_rtsp_available, serving  # noqa: E402


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--max-bytes", default="2MB")
    ap.add_argument("--segment-seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(f"cpu: {cpu_name()}", flush=True)
    if not gst_rtsp_available():
        print("GStreamer RTSP server missing (.ci/run installs it)")
        return 1
    limit = parse_size(args.max_bytes)
    with tempfile.TemporaryDirectory() as tmp, serving(ROOT / "samples" / "bigbuckbunny_360p.mp4") as start:
        cam = start()
        out = Path(tmp) / "out"
        cfg = Path(tmp) / "cfg.yaml"
        cfg.write_text(yaml.safe_dump({
            "streams": [{"name": "cam", "source": cam.url()}],
            "model": {"backbone": "mobilenet_v2", "weights": "none", "threads": 1},
            "output": {"dir": str(out), "video": True, "segment_seconds": args.segment_seconds,
                       "retention": {"video": {"max_bytes": limit}, "every_s": 5}}}))
        subprocess.run([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q", "--duration",
                        str(args.minutes * 60)], cwd=ROOT, check=True)
        report = json.loads((out / "report.json").read_text())
        written = report["streams"]["cam"]["video"]["files"]
        kept = sorted(out.glob("cam_*.mp4"))
        sizes = [p.stat().st_size for p in kept]
        newest = [str(p) for p in kept] == written[-len(kept):]
        print(f"video files written {len(written)}, deleted {report['outputs']['retention']['deleted_files']['video']}, "
              f"kept {len(kept)}")
        print(f"kept {sum(sizes)} bytes; limit {limit} + largest segment {max(sizes)} = {limit + max(sizes)}: "
              f"{'within' if sum(sizes) <= limit + max(sizes) else 'OVER'}; newest kept: {newest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
