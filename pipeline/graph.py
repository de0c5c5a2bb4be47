"""Build the stage graph of a run: pools, channels and one picklable spec per process."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline import outputs_graph
from pipeline.budget import decode_threads, usable_cores
from pipeline.config import Config
from pipeline.shm import PoolOwner
from pipeline.stage import Link, StageSpec
from stages.decode import DecodeConfig
from stages.live import live_config
from stages.sinks import SinkConfig


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
    return rings + outputs_graph.display_bytes(cfg, _model_slots(cfg))


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
    geoms = outputs_graph.plan(cfg)  # None unless video, alerts or the web view need pixels
    if geoms:
        sink_kind, sink_cfg = outputs_graph.outputs_sink(cfg, sink_kind, sink_cfg, geoms)
    displays = {i: outputs_graph.display_port(owner, ctx, cfg, i, geom, _model_slots(cfg))
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
