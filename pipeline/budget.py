"""Core budget: size inference and decode threads to the cores this process may use, so
stages share the machine instead of oversubscribing it (2 cores here)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores in this process's affinity mask (a container's or taskset's limit), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def inference_threads(cores: int | None = None) -> int:
    """All usable cores: the classifier is the heaviest stage, and decode/preprocess run in
    the gaps while it waits for a batch. More threads than cores only adds switching. (An
    OpenVINO engine whose measured plan is one stream then takes one core fewer beside files of
    a megapixel or more a frame, since that stream's threads stall together when a decoder
    preempts one of them.)"""
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
