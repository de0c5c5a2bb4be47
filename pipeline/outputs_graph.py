"""Graph wiring of the watched outputs: display pools and the outputs sink.

build_graph calls these so that graph.py only grows by a few lines."""
from __future__ import annotations

import logging
from typing import Any, Optional

from pipeline.config import Config, StreamConfig
from pipeline.display import DisplayGeom, DisplayPort, slots_needed

log = logging.getLogger(__name__)

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
        from stages.decode import probe

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
    from pipeline.stage import Link

    s = cfg.streams[i]
    n = slots_needed(s.ring_slots, model_slots, cfg.model.batch_bound, geom.every_frame)
    return DisplayPort(Link(owner.create(f"{s.name}_yuv", n, geom.shape, "uint8"), ctx.Queue()), geom)


def segment_seconds(cfg: Config) -> tuple[Optional[float], ...]:
    seg = cfg.output.segment_seconds
    return tuple(seg if seg else (LIVE_SEGMENT_S if s.is_live else None) for s in cfg.streams)


def outputs_sink(cfg: Config, label_kind: str, label: Any, geoms: list[DisplayGeom]) -> tuple[str, Any]:
    from stages.outputs import OutputsConfig

    return "outputs.sink", OutputsConfig(label_kind, label, tuple(geoms), cfg.output.video, segment_seconds(cfg),
                                         tuple(cfg.output.alerts), cfg.output.web is not None,
                                         cfg.output.mqtt if cfg.output.alerts else None)
