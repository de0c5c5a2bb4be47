"""`videoclf bench`: backbones × backends × precisions measured on the user's own clip.

For each combination: parameters, weight size, GMACs, batch-1 latency, best throughput,
end-to-end pipeline FPS on the clip (the real multiprocess pipeline, null sink), peak RSS
per stage process, top-1 agreement with the fp32 torch path on the clip's frames, and a
30 FPS verdict. Output: a terminal table, Markdown and CSV.
"""
from __future__ import annotations

import csv
import logging
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from videoclf.config.schema import Config, ModelConfig, StreamConfig, OutputConfig
from videoclf.core.errors import ConfigError, ResourceError

log = logging.getLogger("videoclf")

def sample_clip() -> str:
    from videoclf.config.assets import sample_clip as shipped

    return str(shipped())
AGREEMENT_FRAMES = 64
THROUGHPUT_BATCHES = (1, 4, 8, 16)
TARGET_TOLERANCE = 0.97  # as in the run report: within 3 % of 30 FPS counts as meeting it


@dataclass
class BenchRow:
    backbone: str
    backend: str
    precision: str
    weights: str = ""
    params_m: float = 0.0
    weights_mb: float = 0.0
    gmacs: float = 0.0
    latency_b1_ms: float = 0.0
    throughput_ips: float = 0.0
    best_batch: int = 0
    pipeline_fps: float = 0.0
    bottleneck: str = ""
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    rss_growth_mb: float = 0.0
    top1_agreement: Optional[float] = None
    meets_target: bool = False
    streams_at_target: int = 0
    note: str = ""


def count_macs(model: Any, crop: int) -> float:
    """Multiply-accumulates of one forward pass at batch 1, counted with forward hooks on the
    layers that carry nearly all the work (convolutions and linear layers)."""
    import torch

    total = 0

    def conv(m: Any, _inp: Any, out: Any) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear(m: Any, _inp: Any, out: Any) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [mod.register_forward_hook(conv if isinstance(mod, torch.nn.Conv2d) else linear)
             for mod in model.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, crop, crop))
    finally:
        for h in hooks:
            h.remove()
    return total / 1e9


def _timed(fn: Any, batch: np.ndarray, repeats: int) -> float:
    fn(batch)  # warm-up at this shape
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class RssSampler:
    """Peak and growth of RSS per stage process (`videoclf: <title>`) while a run goes on."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak: dict[str, float] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            seen: dict[str, float] = {}
            for child in me.children(recursive=True):
                try:
                    title = " ".join(child.cmdline())
                    if not title.startswith("videoclf: "):
                        continue
                    mb = child.memory_info().rss / 2**20
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                seen[title.removeprefix("videoclf: ").strip()] = mb
            # growth counts from when decoders run (the model is loaded by then): loading is not growth
            running = any(n.startswith("decode") for n in seen)
            for name, mb in seen.items():
                self.peak[name] = max(self.peak.get(name, 0.0), mb)
                if running:
                    self.first.setdefault(name, mb)
                    self.last[name] = mb

    def growth(self) -> float:
        """Largest RSS rise of one process from its first to its last sample (MB)."""
        return max((self.last[n] - self.first[n] for n in self.last), default=0.0)


def _weights_for(backbone: str, weights: str) -> str:
    # torchvision's ImageNet weights need a download; lite0's ship with a package
    if weights != "auto":
        return weights
    return "imagenet" if backbone == "efficientnet_lite0" else "none"


def measure(clip: str, model: ModelConfig, frames: int, reference: Optional[np.ndarray],
            inputs: np.ndarray) -> BenchRow:
    """One combination: micro-benchmarks in this process, then the real pipeline."""
    from videoclf.supervision.supervisor import RunOptions, run_pipeline
    from videoclf.plan.compose import open_engine as open_backend

    row = BenchRow(model.backbone, model.backend, model.precision, model.weights)
    opened = open_backend(model)
    row.backend, row.precision = opened.info["backend"], opened.info["precision"]
    row.note = opened.info.get("backend_note", "")
    path = opened.info.get("model_file")
    if path:
        row.weights_mb = round(Path(path).stat().st_size / 2**20, 2)
    run = opened.backend.run
    row.latency_b1_ms = round(_timed(run, inputs[:1], 10) * 1000, 2)
    best = (0.0, 1)
    for b in THROUGHPUT_BATCHES:
        batch = np.resize(inputs, (b,) + inputs.shape[1:])
        best = max(best, (b / _timed(run, batch, 3), b))
    row.throughput_ips, row.best_batch = round(best[0], 1), best[1]
    if reference is not None:
        top1 = np.concatenate([run(inputs[i:i + 16]).argmax(1) for i in range(0, len(inputs), 16)])
        row.top1_agreement = round(float(np.mean(top1 == reference)), 4)
    del opened, run  # free the engine before the pipeline loads its own copy
    import tempfile

    with tempfile.TemporaryDirectory(prefix="videoclf_bench_") as tmp:
        cfg = Config(streams=[StreamConfig(name="clip", source=clip)], model=model, output=OutputConfig(dir=tmp))
        with RssSampler() as rss:
            result = run_pipeline(cfg, RunOptions(max_frames=frames, sink="null", progress=False))
    if result.error is not None:
        raise result.error
    report = result.report
    row.pipeline_fps = report["streams"]["clip"]["sustained_fps"]
    row.bottleneck = report.get("bottleneck") or ""
    # each stage reports its own high-water mark; sampling alone misses a stage that ends between
    # two samples (the decoder of a short clip)
    peaks = dict(rss.peak)
    for title, stage in report["stages"].items():
        peaks[title] = max(peaks.get(title, 0.0), stage.get("peak_rss_mb") or 0.0)
    row.peak_rss_mb = {k: round(v, 1) for k, v in sorted(peaks.items())}
    row.rss_growth_mb = round(rss.growth(), 1)
    row.meets_target = row.pipeline_fps >= 30 * TARGET_TOLERANCE
    row.streams_at_target = int(row.pipeline_fps / (30 * TARGET_TOLERANCE))
    return row


def describe_backbone(model: ModelConfig) -> tuple[float, float, float, Any]:
    """(params M, fp32 weights MB, GMACs, fp32 torch model) of one backbone."""
    import torch

    from videoclf.plan.compose import load_model

    if model.weights == "none":
        torch.manual_seed(0)  # the same random weights as the backends build: agreement is meaningful
    loaded = load_model(model.backbone, model.weights, model.num_classes, model.labels)
    m = loaded.model
    params = sum(p.numel() for p in m.parameters())
    size = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    return params / 1e6, size / 2**20, count_macs(m, model.crop), m


def run_bench(clip: str, backbones: list[str], backends: list[str], precisions: list[str],
              frames: int, weights: str = "auto") -> list[BenchRow]:
    import torch

    from videoclf.supervision.supervisor import preflight  # noqa: F401  (probe below gives the one-line error)
    from videoclf.plan.compose import model_frames, normalise, probe

    probe(clip)  # a missing or unreadable clip fails here, before any model loads
    rows: list[BenchRow] = []
    for backbone in backbones:
        base = ModelConfig(backbone=backbone, weights=_weights_for(backbone, weights), calibration=clip)
        params, mb, gmacs, fp32_model = describe_backbone(base)
        inputs = model_frames(base, AGREEMENT_FRAMES)  # uint8 NHWC, as the engines take them
        with torch.inference_mode():
            reference = fp32_model(torch.from_numpy(normalise(base, inputs))).argmax(1).numpy()
        del fp32_model
        for backend in backends:
            for precision in precisions:
                model = base.model_copy(update={"backend": backend, "precision": precision})
                try:
                    row = measure(clip, model, frames, reference, inputs)
                except ConfigError as exc:  # e.g. bf16 on onnxruntime: a row that says why
                    row = BenchRow(backbone, backend, precision, model.weights, note=f"skipped: {exc}")
                row.params_m, row.gmacs = round(params, 2), round(gmacs, 3)
                row.weights_mb = row.weights_mb or round(mb, 2)
                rows.append(row)
                log.info("bench %s/%s/%s: %.1f FPS", backbone, row.backend, row.precision, row.pipeline_fps)
    return rows


COLUMNS = [("backbone", "backbone"), ("backend", "backend"), ("precision", "precision"), ("params_m", "params M"),
           ("weights_mb", "weights MB"), ("gmacs", "GMACs"), ("latency_b1_ms", "b1 ms"),
           ("throughput_ips", "best img/s"), ("best_batch", "@batch"), ("pipeline_fps", "pipeline FPS"),
           ("top1_agreement", "top-1 vs fp32"), ("meets_target", "≥30 FPS"), ("streams_at_target", "30 FPS streams"),
           ("peak_rss_mb", "peak RSS MB"), ("rss_growth_mb", "RSS growth MB"), ("note", "note")]


def _cell(key: str, value: Any) -> str:
    if key == "top1_agreement":
        return "-" if value is None else f"{100 * value:.1f} %"
    if key == "meets_target":
        return "yes" if value else "NO"
    if key == "peak_rss_mb":
        return " ".join(f"{k.split('[')[0]}={v:.0f}" for k, v in value.items())
    return str(value)


def to_markdown(rows: list[BenchRow]) -> str:
    lines = ["| " + " | ".join(t for _, t in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        d = asdict(r)
        lines.append("| " + " | ".join(_cell(k, d[k]).replace("|", "\\|") for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[BenchRow], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([k for k, _ in COLUMNS])
        for r in rows:
            d = asdict(r)
            w.writerow([_cell(k, d[k]) if k == "peak_rss_mb" else d[k] for k, _ in COLUMNS])


def print_table(rows: list[BenchRow], clip: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"videoclf bench on {clip}"), title_justify="left")
    for _, title in COLUMNS:
        table.add_column(title)
    for r in rows:
        d = asdict(r)
        table.add_row(*(escape(_cell(k, d[k])) for k, _ in COLUMNS))
    Console(width=250).print(table)


def write_outputs(rows: list[BenchRow], out_dir: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResourceError(f"--out {out}: cannot create ({exc.strerror or exc})") from exc
    md, csv_path = out / "bench.md", out / "bench.csv"
    md.write_text(to_markdown(rows), encoding="utf-8")
    write_csv(rows, csv_path)
    return md, csv_path
