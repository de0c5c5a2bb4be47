"""The composition root: the one module of ``pipeline/`` that imports ``stages/``.

The rest of ``pipeline/`` is the runtime (shared memory, stage loops, supervision, reports,
servers) and knows stages only by kind name (``pipeline.stage.STAGE_MODULES``, imported in
the child that runs them). This module builds a run from a config: the stage graph (pools,
channels and one picklable spec per process, display pools and the outputs sink), and the
few stage functions the runtime needs in its own process (probing a source, building an
engine, preparing an uploaded image, tuning, benchmarking helpers).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from pipeline.budget import decode_threads, usable_cores
from pipeline.config import Config, ModelConfig, StreamConfig
from pipeline.display import DisplayGeom, DisplayPort, slots_needed
from pipeline.shm import PoolOwner
from pipeline.stage import Link, StageSpec
from stages.decode import DecodeConfig, probe, to_model_rgb  # noqa: F401 (probe: re-exported to the runtime)
from stages.live import live_config
from stages.sinks import SinkConfig

log = logging.getLogger(__name__)


@dataclass
class Graph:
    specs: list[StageSpec] = field(default_factory=list)  # in start order: sinks first, sources last
    queues: list[Any] = field(default_factory=list)  # every queue, drained at teardown

    def by_role(self, *roles: str) -> list[StageSpec]:
        return [s for s in self.specs if s.role in roles]


def ring_bytes(cfg: Config) -> int:
    """Shared memory the run will allocate: checked against /dev/shm before creating anything."""
    crop = cfg.model.crop
    rings = sum(_frame_slots(cfg, s.ring_slots) for s in cfg.streams) * crop * crop * 3
    return rings + display_bytes(cfg, _model_slots(cfg))


def _model_slots(cfg: Config) -> int:
    # a full batch in each of two infer requests plus one being written: the classifier keeps
    # several batches in flight, and a slot is released when its batch completes
    return 2 * cfg.model.batch_bound + 2


def _frame_slots(cfg: Config, ring_slots: int) -> int:
    # decode writes the model input (RGB uint8, cropped) straight into the classifier's ring
    return max(ring_slots, _model_slots(cfg))


def build_graph(cfg: Config, owner: PoolOwner, ctx: Any, max_frames: int | None, sink_kind: str,
                next_seq: dict[str, int] | None = None) -> Graph:
    """``next_seq`` (a restart after a crash): per stream, the first frame number to log; the
    sinks append to the label logs."""
    resume = next_seq is not None
    g = Graph()
    m = cfg.model
    crop = m.crop
    to_classify = ctx.Queue()
    to_sink = ctx.Queue()
    g.queues += [to_classify, to_sink]
    names = tuple(s.name for s in cfg.streams)
    sink_cfg: Any = SinkConfig(cfg.output.dir, names, m.top_k, m.weights == "none", resume)
    geoms = plan(cfg)  # None unless video, alerts or the web view need pixels
    if geoms:
        sink_kind, sink_cfg = outputs_sink(cfg, sink_kind, sink_cfg, geoms)
    displays = {i: display_port(owner, ctx, cfg, i, geom, _model_slots(cfg))
                for i, geom in enumerate(geoms or [])}
    g.queues += [d.link.channel for d in displays.values()]
    g.specs.append(StageSpec(f"sink[{','.join(names)}]" if len(names) <= 3 else f"sink[{len(names)} streams]",
                             sink_kind, sink_cfg, "sink", inbox=to_sink, n_streams=len(names),
                             display=displays or None))
    pools = {}
    sources: list[StageSpec] = []
    for i, s in enumerate(cfg.streams):
        # FFmpeg's own default (cores + 1 threads per stream) oversubscribes many-stream runs
        s = s.model_copy(update={"decode_threads": s.decode_threads or decode_threads(len(cfg.streams))})
        frames = Link(owner.create(f"{s.name}_rgb", _frame_slots(cfg, s.ring_slots), (crop, crop, 3), "uint8"),
                      to_classify)
        pools[i] = frames.pool
        geom = geoms[i] if geoms else None
        if s.is_live:
            kind, dec = "decode.live", live_config(s, m.resize_to, crop, geom)
        else:
            kind, dec = "decode.file", DecodeConfig(s.name, s.source, m.resize_to, crop, s.roi, s.decode_threads,
                                                    s.loop, geom)
        sources.append(StageSpec(f"decode[{s.name}]", kind, dec, "source", outbox=frames,
                                 policy=s.effective_policy, stream=i, seq_start=(next_seq or {}).get(s.name, 0),
                                 max_frames=max_frames or cfg.max_frames, display=displays.get(i)))
    if m.engine_streams == "auto" and len(cfg.streams) > 1:
        m = m.model_copy(update={"engine_streams": m.threads or usable_cores()})
    device = m.device.replace(":", "")
    g.specs.append(StageSpec(f"classify[{device}]", "classify", m, "batch", inbox=(to_classify, pools),
                             outbox=to_sink, n_streams=len(names), max_batch=cfg.model.batch_bound,
                             max_wait_s=m.max_wait_ms / 1000,
                             drop_oldest=frozenset(i for i, s in enumerate(cfg.streams)
                                                   if s.effective_policy == "drop_oldest")))
    g.specs += sources
    return g


# -- watched outputs: display pools and the outputs sink --------------------------------
LIVE_SEGMENT_S = 300.0  # default rotation of live streams' annotated video
LIVE_SIZE = (1280, 720)  # display size of a live stream (not probed before start): other aspects are letterboxed
PREVIEW_SHORT = 360  # previews (web view, snapshots without video) at most this tall


def wants_display(cfg: Config) -> bool:
    o = cfg.output
    return o.video or bool(o.alerts) or o.web is not None


def _even(v: float) -> int:
    return max(int(v) // 2 * 2, 2)


def display_geom(s: StreamConfig, video: bool) -> DisplayGeom:
    """Full source size (even) for the annotated video; a small preview otherwise."""
    w, h, fps = LIVE_SIZE[0], LIVE_SIZE[1], 30.0
    if not s.is_live:
        info = probe(s.source)
        w, h, fps = info["width"], info["height"], info["fps"] or 30.0
    if not video and h > PREVIEW_SHORT:
        w, h = w * PREVIEW_SHORT / h, PREVIEW_SHORT
    return DisplayGeom(_even(w), _even(h), float(fps), every_frame=video)


def plan(cfg: Config) -> Optional[list[DisplayGeom]]:
    if not wants_display(cfg):
        return None
    return [display_geom(s, cfg.output.video) for s in cfg.streams]


def display_bytes(cfg: Config, model_slots: int) -> int:
    """/dev/shm the display pools take (0 when no output needs pixels)."""
    geoms = plan(cfg)
    if not geoms:
        return 0
    total = 0
    for s, g in zip(cfg.streams, geoms):
        n = slots_needed(s.ring_slots, model_slots, cfg.model.batch_bound, g.every_frame)
        total += n * g.shape[0] * g.shape[1]
    return total


def display_port(owner: Any, ctx: Any, cfg: Config, i: int, geom: DisplayGeom, model_slots: int) -> DisplayPort:
    s = cfg.streams[i]
    n = slots_needed(s.ring_slots, model_slots, cfg.model.batch_bound, geom.every_frame)
    return DisplayPort(Link(owner.create(f"{s.name}_yuv", n, geom.shape, "uint8"), ctx.Queue()), geom)


def segment_seconds(cfg: Config) -> tuple[Optional[float], ...]:
    seg = cfg.output.segment_seconds
    return tuple(seg if seg else (LIVE_SEGMENT_S if s.is_live else None) for s in cfg.streams)


def outputs_sink(cfg: Config, label_kind: str, label: Any, geoms: list[DisplayGeom]) -> tuple[str, Any]:
    from stages.outputs import OutputsConfig  # imports the encoders: only when outputs need pixels

    return "outputs.sink", OutputsConfig(label_kind, label, tuple(geoms), cfg.output.video, segment_seconds(cfg),
                                         tuple(cfg.output.alerts), cfg.output.web is not None,
                                         cfg.output.mqtt if cfg.output.alerts else None)


# -- stage functions the runtime calls in its own process ------------------------------
def open_engine(model: ModelConfig) -> Any:
    """The engine, labels and info for ``model`` (``stages.backends.open_backend``)."""
    from stages.backends import open_backend

    return open_backend(model)


def top_k(logits: Any, k: int) -> Any:
    from stages.classify import top_k as best

    return best(logits, k)


def image_to_model_input(data: bytes, model: ModelConfig) -> Any:
    """An encoded image (JPEG, PNG, …) decoded by FFmpeg and cropped and resized exactly as the
    decoders prepare a frame: RGB uint8, 1×crop×crop×3. ``ValueError`` when it is no image."""
    import io

    import av
    import numpy as np

    try:
        with av.open(io.BytesIO(data)) as container:
            frame = next(container.decode(video=0))
    except (av.FFmpegError, StopIteration, IndexError, ValueError):
        raise ValueError("not a readable image (JPEG, PNG, BMP, WebP…)") from None
    return np.ascontiguousarray(to_model_rgb(frame, DecodeConfig("upload", "", model.resize_to, model.crop))[None])


def tune(config: Config, **kw: Any) -> dict[str, Any]:
    from stages.backends.tune import tune as run_tune

    return run_tune(config, **kw)


def load_model(backbone: str, weights: str, num_classes: Optional[int], labels: Optional[str]) -> Any:
    from stages.backbones import load_model as load

    return load(backbone, weights, num_classes, labels)


def model_frames(model: ModelConfig, n: Optional[int] = None) -> Any:
    from stages.backends.cache import model_frames as frames

    return frames(model, n)


def normalise(model: ModelConfig, frames: Any) -> Any:
    from stages.backends.cache import normalise as norm

    return norm(model, frames)
