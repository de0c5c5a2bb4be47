"""Streams with zones: one decode, one logged stream per zone.

A stream with ``zones`` is decoded once (its decoder, restarts and frame numbers are the
physical stream's) and each zone is classified and logged as a stream of its own,
``<stream>.<zone>``. Everything after the classifier counts these *logged* streams: the
sink's label logs, alerts and tallies, the API's results. Their order: each physical
stream's first logged stream keeps the stream's own index (so what is counted per physical
stream still lines up), and the further zones follow after every physical stream.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional


class Logged(NamedTuple):
    name: str  # the label log's name: the stream's, or <stream>.<zone>
    stream: int  # the physical stream's index
    zone: Optional[int]  # the zone's index in the stream's zones (None: no zones)


def logged_streams(streams: Any) -> tuple[Logged, ...]:
    """Every logged stream of ``streams`` (a config's stream list), in the sink's order."""
    first = [Logged(s.logical_names[0], i, 0 if s.zones else None) for i, s in enumerate(streams)]
    more = [Logged(name, i, z) for i, s in enumerate(streams) for z, name in enumerate(s.logical_names) if z > 0]
    return tuple(first + more)


def zone_groups(streams: Any) -> tuple[tuple[int, ...], ...]:
    """Per physical stream, the sink's indices of its logged streams (its zones' order)."""
    groups: list[list[int]] = [[] for _ in streams]
    for index, lg in enumerate(logged_streams(streams)):
        groups[lg.stream].append(index)
    return tuple(tuple(g) for g in groups)


def has_zones(streams: Any) -> bool:
    return any(s.zones for s in streams)


def logged_config(cfg: Any) -> Any:
    """``cfg`` as the sink sees it: a stream per logged stream (a zone's: named
    ``<stream>.<zone>``, the rest of its stream's settings), in the sink's order. Not
    validated again: the names are the config's, checked unique with it."""
    if not has_zones(cfg.streams):
        return cfg
    streams = [cfg.streams[lg.stream] if lg.zone is None else
               cfg.streams[lg.stream].model_copy(update={"name": lg.name, "zones": ()})
               for lg in logged_streams(cfg.streams)]
    return cfg.model_copy(update={"streams": streams})
