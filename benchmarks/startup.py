"""Time from launching `videoclf run` to the first label line on disk, cold and warm cache.

Usage (run by hand; quote the median):
    python benchmarks/startup.py [--repeat 5] [--config configs/sample.yaml]

The first run uses an empty model cache (export + batch measurement: a one-time cost), the
others the warm cache left by it. Each run's clock starts just before the process is spawned
and stops when the first stream's label log has a complete line. The baseline printed beside
it is `python -c "import torch, torchvision"` in the same venv: what a classify process that
builds its model in torch pays before it can even start.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def first_label_s(config: Path, out: Path, env: dict[str, str]) -> float:
    data = yaml.safe_load(config.read_text())
    data["output"] = {**data.get("output", {}), "dir": str(out)}
    stream = data["streams"][0]["name"]
    for s in data["streams"]:  # relative sources are relative to the config's folder's repo
        if not os.path.isabs(s["source"]) and "://" not in s["source"]:
            s["source"] = str((ROOT / s["source"]).resolve())
    cfg = out.with_suffix(".yaml")
    cfg.write_text(yaml.safe_dump(data))
    log = out / f"{stream}.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "videoclf.cli.main", "run", str(cfg), "-q"], cwd=str(ROOT), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            if log.exists() and b"\n" in log.read_bytes()[:4096]:
                return time.perf_counter() - t0
            if proc.poll() is not None:
                raise SystemExit(f"videoclf run ended before its first label: {proc.stderr.read()}")
            time.sleep(0.005)
    finally:
        proc.wait(timeout=120)


def import_torch_s() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torchvision"], check=True)
    return time.perf_counter() - t0


def main() -> int:
    from handwritten import cpu_info, describe_cpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "sample.yaml"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(describe_cpu(cpu_info()))
    with tempfile.TemporaryDirectory(prefix="videoclf_startup_") as tmp:
        env = {**os.environ, "VIDEOCLF_CACHE": str(Path(tmp) / "cache")}
        cold = first_label_s(Path(args.config), Path(tmp) / "cold", env)
        warm, torch_s = [], []
        for i in range(args.repeat):  # alternated with the baseline, so both see the same machine
            warm.append(first_label_s(Path(args.config), Path(tmp) / f"warm{i}", env))
            torch_s.append(import_torch_s())
    print(f"first label, cold cache: {cold:.2f} s (export + batch measurement, once)")
    print(f"first label, warm cache: median {statistics.median(warm):.2f} s of {args.repeat} "
          f"({', '.join(f'{x:.2f}' for x in warm)}); target <= 3 s: {'met' if statistics.median(warm) <= 3 else 'missed'}")
    print(f"baseline: `import torch, torchvision` alone: median {statistics.median(torch_s):.2f} s "
          f"(ratio warm first label / torch import: {statistics.median(warm) / statistics.median(torch_s):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
