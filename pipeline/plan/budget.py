"""Core budget: size inference and decode threads to the cores this process may use, so
stages share the machine instead of oversubscribing it (2 cores here). Every thread and core
decision of a run is made here, once, into a ``ThreadPlan`` that the specs carry to the stage
processes (docs/speed.md, "Who decides the threads")."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from videoclf.config.schema import Config
from videoclf.core.cpu import CpuQuota, cgroup_cpu_quota, usable_cores
from videoclf.core.threads import CoreSplit, DecodeThreads, EngineThreads, SplitRule

SPARE_CORE_MPX = 1.0  # file pixels per frame from which an engine may leave the decoders a core
# Fitted together to efficientnet_lite0 fp32/int8 and resnet18 fp32 on a 1080p file, EPYC-Z5
# (docs/speed.md): what a decoder on FFmpeg's frame threads pays a frame against one thread,
# in a pipeline beside the engine (a decode-only pass alone pays 1.1x) ...
FRAME_THREADING_COST = 1.3
# ... and the share of a split machine left to the decoder and the engine once the
# classifier's own loop, the sink and the supervisor have run
SPLIT_EFFICIENCY = 0.92


@dataclass(frozen=True, kw_only=True)
class CoreBudget:
    """The cores a run sizes its threads to, and why: the affinity mask (taskset, cpuset) and
    the cgroup's CPU quota (``docker run --cpus``, systemd's ``CPUQuota=``), the smaller of the
    two; a fractional quota rounds down, to at least one core. report.json's ``cores``."""

    usable: int
    affinity: int
    cgroup_quota: Optional[float] = None  # CPUs' worth of time; None: no quota
    source: str = "affinity"  # affinity | cgroup_quota | given (a caller's number, in tests and tools)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def core_budget(affinity: Optional[int] = None, quota: Optional[CpuQuota] = None) -> CoreBudget:
    """The run's core budget from the probes (``affinity`` and ``quota`` default to this
    process's own)."""
    affinity = affinity or usable_cores()
    quota = quota if quota is not None else cgroup_cpu_quota()
    if quota is None:
        return CoreBudget(usable=affinity, affinity=affinity)
    by_quota = max(1, int(quota.cpus))
    cpus = round(quota.cpus, 3)
    if by_quota < affinity:
        return CoreBudget(usable=by_quota, affinity=affinity, cgroup_quota=cpus, source="cgroup_quota")
    return CoreBudget(usable=affinity, affinity=affinity, cgroup_quota=cpus)


def inference_threads(cores: int | None = None) -> int:
    """All usable cores: the classifier is the heaviest stage, and decode/preprocess run in
    the gaps while it waits for a batch. More threads than cores only adds switching. (Beside
    files of a megapixel or more a frame an OpenVINO engine may take one core fewer: always
    when its measured plan is one stream, whose threads stall together when a decoder preempts
    one of them; by ``split_or_share`` when it is several.)"""
    return cores or core_budget().usable


def decode_threads(n_streams: int, cores: int | None = None) -> int:
    """FFmpeg threads per stream: the cores split between streams, at least one each. FFmpeg's
    own 'auto' would give every stream every core (plus one), oversubscribing many-camera runs.

    Frame threading costs CPU (a 1080p H.264 frame: 3.7 core-ms with two threads, 2.8 with
    one, EPYC-Z5), yet one thread for a single file on 2 cores was not better overall: it
    made mobilenet_v2 fp32 (one engine stream using both cores) 1.18x faster, but
    efficientnet_lite0 and resnet18 (two single-threaded engine streams, which leave the
    lone decode thread too little of a core) 0.85x and 0.94x (docs/speed.md)."""
    cores = cores or core_budget().usable
    return max(1, cores // max(1, n_streams))


def split_or_share(decode_s: float, alone_ips: float, shared_ips: float, cores: int) -> CoreSplit:
    """One file beside an engine of several streams: predicted frames/s of the two ways to
    share the cores, from measured costs. Split: the decoder's one thread keeps a core (at most
    1 / ``decode_s`` frames/s), the engine runs on the rest at ``alone_ips``. Shared: every
    core does both, the decoder on frame threads (FRAME_THREADING_COST more CPU a frame),
    the engine at ``shared_ips`` on all cores. Splitting wins when decoding and inference cost
    about the same; sharing when one of them dwarfs the other."""
    return split_rule(decode_s, cores).predict(alone_ips, shared_ips)


def split_rule(decode_s: float, cores: int) -> SplitRule:
    return SplitRule(decode_s=decode_s, cores=cores, frame_threading_cost=FRAME_THREADING_COST,
                     split_efficiency=SPLIT_EFFICIENCY)


@dataclass(frozen=True, kw_only=True)
class ThreadPlan:
    """Every thread and core number of a run: per stream its decoder's, and the engine's, and
    the core budget they were sized to."""

    cores: int
    budget: CoreBudget
    decoders: tuple[DecodeThreads, ...]
    engine: EngineThreads


def file_mpx(infos: dict[int, dict]) -> float:
    """Megapixels a frame of all the run's files together (the probed ones)."""
    return sum(i["width"] * i["height"] for i in infos.values() if i.get("width") and i.get("height")) / 1e6


def wants_decode_cost(cfg: Config, mpx: float) -> bool:
    """One file large enough that the engine may leave its decoder a core, with automatic
    threads: how the engine shares the cores then depends on what a frame costs to decode
    (``split_or_share``), measured on its first frames (~0.07 s for 1080p)."""
    one = len(cfg.streams) == 1 and not cfg.streams[0].zones  # zones: several inputs a frame, as several streams
    return one and not cfg.streams[0].is_live and cfg.model.threads == 0 and mpx >= SPARE_CORE_MPX


def _decoder(threads: int, auto: bool, live: bool) -> DecodeThreads:
    # beside one engine stream spread over every core (measured by the engine), a file's
    # automatic FFmpeg threads are halved: frame threading's extra CPU costs more than it gains
    lean = max(1, threads // 2) if auto and not live and threads > 1 else threads
    return DecodeThreads(threads=threads, lean=lean)


def thread_plan(cfg: Config, mpx: float = 0.0, decode_s: float = 0.0, cores: Optional[int] = None) -> ThreadPlan:
    """The run's threads. ``mpx``: the files' megapixels a frame; ``decode_s``: a frame's
    decode cost on one thread when ``wants_decode_cost`` (0: not measured); ``cores``: a number
    to size to instead of this process's ``core_budget``."""
    budget = core_budget() if not cores else CoreBudget(usable=cores, affinity=cores, source="given")
    cores = budget.usable
    n, m = len(cfg.streams), cfg.model
    decoders = tuple(_decoder(s.decode_threads or decode_threads(n, cores), not s.decode_threads, s.is_live)
                     for s in cfg.streams)
    threads = m.threads or inference_threads(cores)
    if m.engine_streams != "auto":
        streams: Optional[int] = int(m.engine_streams)
    else:  # several cameras (or zones): a stream per thread, each inference alone on a core; one: measured
        streams = threads if sum(max(1, len(s.zones)) for s in cfg.streams) > 1 else None
    # large file frames only: a 1080p frame costs ~3 core-ms to decode, a 360p one ~0.4, and
    # beside a fast engine only the former needs the spared core (mobilenet_v2 fp32 on 2
    # cores: 1.15x the FPS on a 1080p file, 0.97x on the 360p sample)
    spare = m.threads == 0 and threads > 1 and mpx >= SPARE_CORE_MPX and not m.device.startswith("cuda")
    engine = EngineThreads(threads=threads, streams=streams, spare_core=spare,
                           split=split_rule(decode_s, cores) if spare and decode_s > 0 else None,
                           lean_decoders=any(d.lean != d.threads for d in decoders))
    return ThreadPlan(cores=cores, budget=budget, decoders=decoders, engine=engine)
