"""Core budget: size inference and decode threads to the cores this process may use, so
stages share the machine instead of oversubscribing it (2 cores here)."""
from __future__ import annotations

import os
from typing import NamedTuple

SPARE_CORE_MPX = 1.0  # file pixels per frame from which an engine may leave the decoders a core
# Fitted together to efficientnet_lite0 fp32/int8 and resnet18 fp32 on a 1080p file, EPYC-Z5
# (docs/speed.md): what a decoder on FFmpeg's frame threads pays a frame against one thread,
# in a pipeline beside the engine (a decode-only pass alone pays 1.1x) ...
FRAME_THREADING_COST = 1.3
# ... and the share of a split machine left to the decoder and the engine once the
# classifier's own loop, the sink and the supervisor have run
SPLIT_EFFICIENCY = 0.92


def usable_cores() -> int:
    """Cores in this process's affinity mask (a container's or taskset's limit), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def inference_threads(cores: int | None = None) -> int:
    """All usable cores: the classifier is the heaviest stage, and decode/preprocess run in
    the gaps while it waits for a batch. More threads than cores only adds switching. (Beside
    files of a megapixel or more a frame an OpenVINO engine may take one core fewer: always
    when its measured plan is one stream, whose threads stall together when a decoder preempts
    one of them; by ``split_or_share`` when it is several.)"""
    return cores or usable_cores()


def decode_threads(n_streams: int, cores: int | None = None) -> int:
    """FFmpeg threads per stream: the cores split between streams, at least one each. FFmpeg's
    own 'auto' would give every stream every core (plus one), oversubscribing many-camera runs.

    Frame threading costs CPU (a 1080p H.264 frame: 3.7 core-ms with two threads, 2.8 with
    one, EPYC-Z5), yet one thread for a single file on 2 cores was not better overall: it
    made mobilenet_v2 fp32 (one engine stream using both cores) 1.18x faster, but
    efficientnet_lite0 and resnet18 (two single-threaded engine streams, which leave the
    lone decode thread too little of a core) 0.85x and 0.94x (docs/speed.md)."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, n_streams))


class CoreSplit(NamedTuple):
    split: bool  # a core to the decoder, the rest to the engine
    split_fps: float
    shared_fps: float


def split_or_share(decode_s: float, alone_ips: float, shared_ips: float, cores: int) -> CoreSplit:
    """One file beside an engine of several streams: predicted frames/s of the two ways to
    share the cores, from measured costs. Split: the decoder's one thread keeps a core (at most
    1 / ``decode_s`` frames/s), the engine runs on the rest at ``alone_ips``. Shared: every
    core does both, the decoder on frame threads (FRAME_THREADING_COST more CPU a frame),
    the engine at ``shared_ips`` on all cores. Splitting wins when decoding and inference cost
    about the same; sharing when one of them dwarfs the other."""
    split = SPLIT_EFFICIENCY * min(1.0 / decode_s, alone_ips)
    shared = cores / (FRAME_THREADING_COST * decode_s + cores / shared_ips)
    return CoreSplit(split > shared, split, shared)
