"""Fleet costs on one host, run by hand (not a test): a Ray cluster (head + one worker node)
is started and timed, then the same 2 file streams run locally and on the fleet, alternated
(ABAB…), and the FPS ratio fleet/local is printed as the median of the pairs, with the
driver's and the node agent's RSS sampled during the fleet runs.

    .venv/bin/python benchmarks/fleet.py [--repeat 3] [--backbone efficientnet_lite0]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]

from handwritten import cpu_info, describe_cpu  # noqa: E402
from naive_vs_pipeline import RESULTS, make_clip  # noqa: E402


def run(cfg: Path, out: Path, address: str | None) -> tuple[float, float, float]:
    """Mean sustained FPS of the streams, and the peak RSS (MB) of the driver and the agent."""
    cmd = [sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q", "-o", str(out)]
    if address:
        cmd += ["--ray", address]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), stderr=subprocess.PIPE, text=True)
    driver = agent = 0.0
    while proc.poll() is None:
        try:
            driver = max(driver, psutil.Process(proc.pid).memory_info().rss / 2**20)
        except psutil.Error:
            pass
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            if "ray::Agent" in " ".join(p.info["cmdline"] or []) and p.info["memory_info"]:
                agent = max(agent, p.info["memory_info"].rss / 2**20)
        time.sleep(0.5)
    if proc.returncode:
        raise SystemExit(f"run failed: {proc.stderr.read()[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    fps = [s.get("sustained_fps", 0.0) for s in report["streams"].values()]
    return statistics.mean(fps), driver, agent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    args = ap.parse_args()
    print(describe_cpu(cpu_info()))
    from ray.cluster_utils import Cluster

    clip = make_clip(RESULTS / "clip_640x360_30fps.mp4", seconds=10, size=(640, 360))
    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20})
    cluster.add_node(num_cpus=2, resources={"videoclf_streams": 2}, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    print(f"cluster start-up (head + 1 worker node): {time.monotonic() - t0:.1f} s")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "two.yaml"
            cfg.write_text(yaml.safe_dump({"streams": [{"name": f"s{i}", "source": str(clip)} for i in range(2)],
                                           "model": {"backbone": args.backbone}}))
            ratios, drivers, agents = [], [], []
            for k in range(args.repeat):
                order = [None, cluster.address] if k % 2 == 0 else [cluster.address, None]
                got = {}
                for address in order:
                    got[address] = run(cfg, Path(tmp) / f"out{k}{bool(address)}", address)
                local, fleet = got[None][0], got[cluster.address][0]
                drivers.append(got[cluster.address][1])
                agents.append(got[cluster.address][2])
                ratios.append(fleet / local)
                print(f"pair {k + 1}: local {local:.1f} FPS, fleet {fleet:.1f} FPS per stream: {fleet / local:.3f}x")
            print(f"fleet / local, median of {args.repeat} alternated pairs: {statistics.median(ratios):.3f}x")
            print(f"peak RSS: driver {max(drivers):.0f} MB, node agent {max(agents):.0f} MB "
                  "(the shard's own supervisor and stages come on top, as in a local run)")
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
