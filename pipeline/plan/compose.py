"""The composition root: the one module of ``pipeline/`` that imports ``stages/``.

The rest of ``pipeline/`` is the runtime (shared memory, stage loops, supervision, reports,
servers) and knows stages only by kind name and the module that registers it (``STAGE_MODULES``
below, imported in the child that runs them). This module computes a run's plan from a config, once (each
file probed once): the decoder configs, display geometry, the outputs sink, the classifier's
spec and the shared memory needed; the plan builds any process's spec, with its pools, when
the supervisor starts or rebuilds that process's fault domain. It also gives the runtime the
few stage functions it needs in its own process (probing a source, building an
engine, preparing an uploaded image, tuning, benchmarking helpers).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Optional

from videoclf.plan.budget import ThreadPlan, file_mpx, thread_plan, wants_decode_cost
from videoclf.config.schema import Config, ModelConfig, StreamConfig
from videoclf.config.zones import has_zones, logged_config, logged_streams, zone_groups
from videoclf.core.errors import ConfigError
from videoclf.core.records import DisplayGeom
from videoclf.ipc.display import DisplayPort, slots_needed
from videoclf.ipc.shm import PoolOwner
from videoclf.core.contract import Policy
from videoclf.runtime.specs import BatchSpec, Port, SinkSpec, SourceSpec
from videoclf.ipc.transport import address
from videoclf.stages.decode.file import DecodeConfig, decode_cost, probe, to_model_rgb  # noqa: F401 (probe: re-exported to the runtime)
from videoclf.stages.decode.geometry import fit_geometry
from videoclf.stages.decode.live import live_config
from videoclf.stages.classify.stage import ClassifyConfig
from videoclf.stages.outputs.labels import SinkConfig

log = logging.getLogger(__name__)

# the module that registers each stage kind: a stage process imports only the one it runs
STAGE_MODULES = {"decode": "videoclf.stages.decode.file", "decode.live": "videoclf.stages.decode.live",
                 "classify": "videoclf.stages.classify.stage", "sink": "videoclf.stages.outputs.labels",
                 "outputs": "videoclf.stages.outputs.stage"}


def stage_module(kind: str) -> str:
    return STAGE_MODULES.get(kind) or STAGE_MODULES[kind.split(".")[0]]


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Everything a run's processes need, computed once (each file probed once): the
    supervisor checks it before starting, materialises it, and rebuilds any one domain from
    it (a decoder with a fresh pool, the classifier, the sink) while the others run on."""

    cfg: Config
    run_id: str
    sink_kind: str  # the sink's STAGES name
    sink_cfg: Any
    geoms: Optional[tuple[DisplayGeom, ...]]  # per stream, when an output needs pixels
    decoders: tuple[tuple[str, Any], ...]  # per stream: (STAGES name, picklable decode config)
    classifier: BatchSpec
    sink_title: str
    max_frames: Optional[int]
    shm_bytes: int  # what the pools take in /dev/shm (checked before anything is created)
    threads: Optional[ThreadPlan] = None  # every thread and core number of the run (the specs carry them)
    first_seq: tuple[int, ...] = ()  # per stream: its first frame number in this run (pipeline/plan/resume.py)
    tap: Optional[str] = None  # where the sink also sends each result (videoclf.api's inbox), if anywhere
    # with zones, per logged stream: the last frame its log held at the start (a stream goes on
    # after the lowest of its zones', and the sink drops what each log holds); () : none
    zone_last: tuple[int, ...] = ()

    def first(self, i: int) -> int:
        return self.first_seq[i] if self.first_seq else self.cfg.streams[i].start_frame

    @property
    def sink_address(self) -> str:
        return self.classifier.to

    def source(self, owner: PoolOwner, i: int, gen: int, seq_start: int) -> SourceSpec:
        """Decoder ``i``'s spec; generation ``gen`` > 0 (a restart) gets pools of its own."""
        s, cfg = self.cfg.streams[i], self.cfg
        tag = f"_g{gen}" if gen else ""
        shape = (len(s.zones),) * bool(s.zones) + (cfg.model.crop,) * 2 + (3,)  # a stream with zones: an input each
        pool = owner.create(f"{s.name}_rgb{tag}", _frame_slots(cfg, s.ring_slots), shape, "uint8")
        display = None
        if self.geoms:
            g = self.geoms[i]
            n = slots_needed(s.ring_slots, _model_slots(cfg), cfg.model.batch_bound, g.every_frame)
            display = DisplayPort(Port(owner.create(f"{s.name}_yuv{tag}", n, g.shape, "uint8"), self.sink_address), g)
        kind, dec = self.decoders[i]
        return SourceSpec(title=f"decode[{s.name}]", kind=kind, config=dec, stream=i,
                          out=Port(pool, self.classifier.inbox), policy=Policy(s.effective_policy),
                          seq_start=seq_start, max_frames=self.max_frames, display=display, seq_base=self.first(i),
                          module=stage_module(kind))

    def sink(self, last_seq: tuple[int, ...] = (), ended: frozenset = frozenset()) -> SinkSpec:
        """The sink's spec; after a crash it appends to the logs and drops what they hold."""
        cfg, last_seq = self.sink_cfg, last_seq or self.zone_last
        if last_seq:
            cfg = replace(cfg, append=True) if not hasattr(cfg, "label") else \
                replace(cfg, label=replace(cfg.label, append=True))
        display = {i: g for i, g in enumerate(self.geoms)} if self.geoms else None
        zones = zone_groups(self.cfg.streams) if has_zones(self.cfg.streams) else ()
        return SinkSpec(title=self.sink_title, kind=self.sink_kind, config=cfg, inbox=self.sink_address,
                        n_streams=len(logged_streams(self.cfg.streams)), last_seq=last_seq, ended=ended,
                        display=display, module=stage_module(self.sink_kind), tap=self.tap, zones=zones)


def make_plan(cfg: Config, run_id: str, max_frames: int | None, sink_kind: str, first_seq: tuple[int, ...] = (),
              overwrite: bool = False) -> RunPlan:
    infos = {i: probe(s.source) for i, s in enumerate(cfg.streams) if not s.is_live}  # the one probe per file
    for i, info in infos.items():
        check_regions(cfg.streams[i], info)
    m = cfg.model
    names = tuple(s.name for s in cfg.streams)
    geoms = tuple(display_geom(s, cfg.output.video, infos.get(i)) for i, s in enumerate(cfg.streams)) \
        if wants_display(cfg) else None
    sink_kind, sink_cfg = _sink(cfg, sink_kind, not overwrite, geoms)
    threads = _threads(cfg, infos)
    if any(s.decode.fast == "auto" for s in cfg.streams):
        log.info("%s", fast_decode(cfg.model)[1])  # once per run: on or off, and why (not measured yet)
    decoders = tuple(_decoder(cfg, i, threads, geoms[i] if geoms else None) for i in range(len(cfg.streams)))
    classifier = BatchSpec(title=f"classify[{m.device.replace(':', '')}]", kind="classify",
                           config=ClassifyConfig(model=m, threads=threads.engine, zones=_zones(cfg)),
                           inbox=address(run_id, "classify"),
                           to=address(run_id, "sink"), n_streams=len(names), max_batch=m.batch_bound,
                           max_wait_s=m.max_wait_ms / 1000,
                           drop_oldest=_drop_oldest(cfg),
                           lean_decode=threads.engine.lean_decoders, module=stage_module("classify"),
                           zones={i: len(s.zones) for i, s in enumerate(cfg.streams) if s.zones})
    rings = sum(_frame_slots(cfg, s.ring_slots) * max(1, len(s.zones)) for s in cfg.streams) * m.crop * m.crop * 3
    shm = rings + _display_bytes(cfg, geoms)
    title = f"sink[{','.join(names)}]" if len(names) <= 3 else f"sink[{len(names)} streams]"
    zone_last = () if overwrite or sink_kind == "sink.null" or not has_zones(cfg.streams) else \
        tuple(_last_logged(cfg, lg.name) for lg in logged_streams(cfg.streams))
    return RunPlan(cfg=cfg, run_id=run_id, sink_kind=sink_kind, sink_cfg=sink_cfg, geoms=geoms, decoders=decoders,
                   classifier=classifier, sink_title=title, max_frames=max_frames or cfg.max_frames, shm_bytes=shm,
                   threads=threads, first_seq=first_seq, zone_last=zone_last)


def check_regions(s: StreamConfig, info: dict[str, Any]) -> None:
    """A file's roi or zones inside its frame, before any process starts (InputError naming the key)."""
    if info.get("width") and info.get("height"):
        for zone in s.zones:
            fit_geometry(info["width"], info["height"], zone, 1, f"streams.{s.name}.zones.{zone.name}")
        if s.roi is not None:
            fit_geometry(info["width"], info["height"], s.roi, 1, s.name)


def _sink(cfg: Config, label_kind: str, append: bool, geoms: Optional[tuple[DisplayGeom, ...]],
          events: Optional[bool] = None) -> tuple[str, Any]:
    """The sink's kind and config for ``cfg``'s streams: the outputs sink when an output needs
    pixels or (``events``, by default when any stream has label_change) writes events, without
    display frames for those alone. One log (and alerts, tallies, video, smoothing) per logged
    stream, a zone's with its stream's display frames."""
    clip_of: tuple[tuple[int, str], ...] = ()
    if has_zones(cfg.streams):  # a zone's clips are its camera's: the packets come per physical stream
        clip_of = tuple((lg.stream, cfg.streams[lg.stream].name) for lg in logged_streams(cfg.streams))
        if geoms:
            geoms = tuple(geoms[lg.stream] for lg in logged_streams(cfg.streams))
    cfg, m = logged_config(cfg), cfg.model
    label: Any = SinkConfig(cfg.output.dir, tuple(s.name for s in cfg.streams), m.top_k,
                            random_weights=m.weights == "none", append=append, sources=_file_identities(cfg),
                            retention=cfg.output.retention, min_free=cfg.output.min_free,
                            smooth=tuple(s.smooth for s in cfg.streams))
    if events is None:
        events = any(s.label_change is not None for s in cfg.streams)
    if geoms or events:
        return outputs_sink(cfg, label_kind, label, list(geoms) if geoms else [None] * len(cfg.streams), clip_of)
    return label_kind, label


def _zones(cfg: Config) -> int:
    """The most model inputs one frame brings (a stream's zones; 1 without)."""
    return max([len(s.zones) for s in cfg.streams] + [1])


def _drop_oldest(cfg: Config) -> dict[int, float]:
    return {i: s.live.max_queue_s for i, s in enumerate(cfg.streams) if s.effective_policy == "drop_oldest"}


def with_stream(plan: RunPlan, i: int, stream: StreamConfig, first: int) -> RunPlan:
    """``plan`` with stream ``i`` added (``i`` = the number of streams) or replaced by
    ``stream`` while the run goes on: its decoder, display geometry, the sink's config and the
    classifier's spec (what a restarted classifier or sink is built from). The other streams'
    entries are unchanged; the new decoder's threads are sized as at the start."""
    if stream.zones or has_zones(plan.cfg.streams):
        raise ConfigError(f"streams.{stream.name}: a run with zones takes no stream changes while it goes on "
                          f"(its logged streams are laid out at the start): restart it")
    streams = list(plan.cfg.streams)
    streams[i:i + 1] = [stream]
    cfg = plan.cfg.model_copy(update={"streams": streams})
    firsts = [plan.first(j) for j in range(len(plan.cfg.streams))]
    firsts[i:i + 1] = [first]
    info = None if stream.is_live else probe(stream.source)
    geoms = None
    if plan.geoms is not None:
        geoms = list(plan.geoms)
        geoms[i:i + 1] = [display_geom(stream, cfg.output.video, info)]
    label_kind = getattr(plan.sink_cfg, "label_kind", plan.sink_kind)
    outputs = plan.sink_kind == "outputs.sink"  # the running sink's kind stays
    if stream.label_change is not None and not outputs:
        log.warning("%s: label_change takes a restart (the run's sink writes label logs only)", stream.name)
    sink_kind, sink_cfg = _sink(cfg, label_kind, True, tuple(geoms) if geoms else None, outputs)
    assert plan.threads is not None
    fresh = thread_plan(cfg, cores=plan.threads.cores).decoders[i]
    decoders = list(plan.threads.decoders)
    decoders[i:i + 1] = [fresh]
    threads = replace(plan.threads, decoders=tuple(decoders))
    kinds = list(plan.decoders)
    kinds[i:i + 1] = [_decoder(cfg, i, threads, geoms[i] if geoms else None)]
    classifier = replace(plan.classifier, n_streams=len(streams), drop_oldest=_drop_oldest(cfg))
    return replace(plan, cfg=cfg, sink_kind=sink_kind, sink_cfg=sink_cfg, geoms=tuple(geoms) if geoms else None,
                   decoders=tuple(kinds), classifier=classifier, threads=threads, first_seq=tuple(firsts))


def _threads(cfg: Config, infos: dict[int, dict]) -> ThreadPlan:
    """The run's thread plan (videoclf.plan.budget), with the one decode-cost look it may need."""
    mpx, decode_s = file_mpx(infos), 0.0
    if wants_decode_cost(cfg, mpx):
        s, m = cfg.streams[0], cfg.model
        decode_s = decode_cost(s.source, m.resize_to, m.crop, s.zones or s.roi, name=s.name)
    return thread_plan(cfg, mpx, decode_s)


def _decoder(cfg: Config, i: int, threads: ThreadPlan, geom: Optional[DisplayGeom]) -> tuple[str, Any]:
    """Stream ``i``'s decoder: its STAGES name and config, with the plan's threads."""
    s, m, t = cfg.streams[i], cfg.model, threads.decoders[i]
    fast = fast_decode(m)[0] if s.decode.fast == "auto" else bool(s.decode.fast)  # resolved here, once
    if s.is_live:
        clips = wants_clips(cfg, s)  # event clips: its packets go to the sink
        return "decode.live", live_config(s, m.resize_to, m.crop, geom, threads=t.threads, fast=fast, clips=clips)
    return "decode.file", DecodeConfig(s.name, s.source, m.resize_to, m.crop, s.roi, t.threads, s.loop, geom,
                                       lean_threads=t.lean, classify=s.classify, gate=s.gate, fast=fast, zones=s.zones)


def _last_logged(cfg: Config, name: str) -> int:
    from videoclf.stages.outputs.labellog import last_logged_frame

    last = last_logged_frame(cfg.output, name)
    return -1 if last is None else last


def _file_identities(cfg: Config) -> tuple[Optional[dict], ...]:
    """Per stream, what a complete log records of its file (None: live or looping sources)."""
    from videoclf.stages.outputs.labellog import source_identity

    out: list[Optional[dict]] = []
    for s in cfg.streams:
        try:
            out.append(None if s.is_live or s.loop else source_identity(s.source))
        except OSError:
            out.append(None)
    return tuple(out)


def _model_slots(cfg: Config) -> int:
    # a full batch in each of two infer requests plus one being written: the classifier keeps
    # several batches in flight, and a slot is released when its batch completes
    return 2 * cfg.model.batch_bound + 2


def _frame_slots(cfg: Config, ring_slots: int) -> int:
    # decode writes the model input (RGB uint8, cropped) straight into the classifier's pool
    return max(ring_slots, _model_slots(cfg))


# -- watched outputs: display pools and the outputs sink --------------------------------
LIVE_SEGMENT_S = 300.0  # default rotation of live streams' annotated video
LIVE_SIZE = (1280, 720)  # display size of a live stream (not probed before start): other aspects are letterboxed
PREVIEW_SHORT = 360  # previews (web view, snapshots without video) at most this tall


def wants_display(cfg: Config) -> bool:
    """An output needs the decoders' display link: pixels (video, alerts' snapshots, the web
    view) or a camera's packets (label-change clips)."""
    o = cfg.output
    return o.video or bool(o.alerts) or o.web is not None or any(_change_clips(s) for s in cfg.streams)


def _change_clips(s: StreamConfig) -> bool:
    return s.label_change is not None and s.label_change.clip is not None


def wants_clips(cfg: Config, s: StreamConfig) -> bool:
    """Stream ``s``'s events record clips (an alert rule or its label_change asks): its decoder sends its packets."""
    return any(r.clip is not None for r in cfg.output.alerts) or _change_clips(s)


def _even(v: float) -> int:
    return max(int(v) // 2 * 2, 2)


def display_geom(s: StreamConfig, video: bool, info: Optional[dict[str, Any]]) -> DisplayGeom:
    """Full source size (even) for the annotated video; a small preview otherwise."""
    w, h, fps = LIVE_SIZE[0], LIVE_SIZE[1], 30.0
    if info is not None:
        w, h, fps = info["width"], info["height"], info["fps"] or 30.0
    if not video and h > PREVIEW_SHORT:
        w, h = w * PREVIEW_SHORT / h, PREVIEW_SHORT
    return DisplayGeom(_even(w), _even(h), float(fps), every_frame=video)


def _display_bytes(cfg: Config, geoms: Optional[tuple[DisplayGeom, ...]]) -> int:
    """/dev/shm the display pools take (0 when no output needs pixels)."""
    if not geoms:
        return 0
    total = 0
    for s, g in zip(cfg.streams, geoms):
        n = slots_needed(s.ring_slots, _model_slots(cfg), cfg.model.batch_bound, g.every_frame)
        total += n * g.shape[0] * g.shape[1]
    return total


def segment_seconds(cfg: Config) -> tuple[Optional[float], ...]:
    seg = cfg.output.segment_seconds
    return tuple(seg if seg else (LIVE_SEGMENT_S if s.is_live else None) for s in cfg.streams)


def outputs_sink(cfg: Config, label_kind: str, label: Any, geoms: list[Optional[DisplayGeom]],
                 clip_of: tuple[tuple[int, str], ...] = ()) -> tuple[str, Any]:
    from videoclf.stages.outputs.stage import OutputsConfig  # imports the encoders: only when outputs need pixels or events

    changes = tuple(s.label_change for s in cfg.streams)
    events = bool(cfg.output.alerts) or any(c is not None for c in changes)
    return "outputs.sink", OutputsConfig(label_kind, label, tuple(geoms), cfg.output.video, segment_seconds(cfg),
                                         tuple(cfg.output.alerts), cfg.output.web is not None,
                                         cfg.output.mqtt is not None and events,
                                         tuple(s.live.watchdog_s if s.is_live else None for s in cfg.streams),
                                         cfg.output.timezone, changes, clip_of)


# -- stage functions the runtime calls in its own process ------------------------------
def open_engine(model: ModelConfig) -> Any:
    """The engine, labels and info for ``model`` (``videoclf.stages.classify.backends.open_backend``)."""
    from videoclf.stages.classify.backends import open_backend

    return open_backend(model)


def top_k(logits: Any, k: int) -> Any:
    from videoclf.stages.classify.stage import top_k as best

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


def fast_decode(model: ModelConfig) -> tuple[bool, str]:
    """``decode.fast: auto``: (on or off, why), as ``videoclf tune`` measured for this model."""
    from videoclf.stages.classify.backends.fast_decode import fast_choice

    return fast_choice(model)


def tune(config: Config, **kw: Any) -> dict[str, Any]:
    from videoclf.stages.classify.backends.tune import tune as run_tune

    return run_tune(config, **kw)


def load_model(backbone: str, weights: str, num_classes: Optional[int], labels: Optional[str]) -> Any:
    from videoclf.stages.classify.backbones import load_model as load

    return load(backbone, weights, num_classes, labels)


def model_frames(model: ModelConfig, n: Optional[int] = None) -> Any:
    from videoclf.stages.classify.backends.cache import model_frames as frames

    return frames(model, n)


def normalise(model: ModelConfig, frames: Any) -> Any:
    from videoclf.stages.classify.backends.cache import normalise as norm

    return norm(model, frames)
