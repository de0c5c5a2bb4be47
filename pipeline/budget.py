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
    the gaps while it waits for a batch. More threads than cores only adds switching."""
    return cores or usable_cores()


def decode_threads(n_streams: int, cores: int | None = None, shares_cores: bool = True) -> int:
    """FFmpeg threads per stream. FFmpeg's own 'auto' would give every stream every core (plus
    one), oversubscribing many-camera runs. Frame threading also costs CPU: a 1080p H.264
    frame took 3.7 core-ms with two threads against 2.8 with one (EPYC-Z4). So when the
    classifier runs on the same cores (``shares_cores``) the decoders get half of them in all,
    at least one thread each: on 2 cores one thread per stream, which made a one-file
    mobilenet_v2 run 1.2x faster. A classifier on a GPU leaves the cores to the decoders."""
    cores = cores or usable_cores()
    share = cores // 2 if shares_cores else cores
    return max(1, share // max(1, n_streams))
