"""Where a fleet's streams run: each node takes streams up to its capacity, least-loaded
first, so that the spare room left on every node can absorb a lost node's streams.

A node's capacity is its ``videoclf_streams`` Ray resource (``ray start --resources
'{"videoclf_streams": 4}'``). A cluster in which no node has that resource gives every node
``cluster.streams_per_node``; once any node has it, nodes without it take no stream (the head
of such a cluster only coordinates)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

RESOURCE = "videoclf_streams"


@dataclass(frozen=True)
class Node:
    id: str
    address: str
    capacity: int
    resources: dict[str, float] = field(default_factory=dict)
    gpus: float = 0.0


def nodes_from_ray(ray_nodes: Iterable[dict[str, Any]], per_node: int) -> list[Node]:
    """Alive nodes of ``ray.nodes()`` with the streams each takes."""
    alive = [n for n in ray_nodes if n.get("Alive")]
    any_declared = any(RESOURCE in (n.get("Resources") or {}) for n in alive)
    out = []
    for n in alive:
        res = dict(n.get("Resources") or {})
        cap = int(res.get(RESOURCE, 0)) if any_declared else per_node
        out.append(Node(n["NodeID"], n.get("NodeManagerAddress", "?"), cap, res, float(res.get("GPU", 0))))
    return out


def fits(place: Any, node: Node) -> bool:
    """The node has every resource the stream asks for (``place.resources``, ``place.num_gpus``)."""
    need = getattr(place, "resources", None) or {}
    return all(node.resources.get(k, 0) >= v for k, v in need.items()) and node.gpus >= getattr(place, "num_gpus", 0)


def choose(place: Any, nodes: list[Node], load: dict[str, int]) -> Optional[Node]:
    """The node with room that fits, least loaded by share of its capacity (then by count, then id)."""
    ok = [n for n in nodes if n.capacity > load.get(n.id, 0) and fits(place, n)]
    return min(ok, key=lambda n: (load.get(n.id, 0) / n.capacity, load.get(n.id, 0), n.id), default=None)


def assign(streams: list[tuple[str, Any]], nodes: list[Node], load: dict[str, int]) -> dict[str, Optional[str]]:
    """Place ``(name, place)`` streams one by one; ``load`` (streams per node id) is updated.
    A stream that fits nowhere gets None: it waits until room appears."""
    out: dict[str, Optional[str]] = {}
    for name, place in streams:
        node = choose(place, nodes, load)
        out[name] = node.id if node else None
        if node:
            load[node.id] = load.get(node.id, 0) + 1
    return out
