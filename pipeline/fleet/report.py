"""report.json of a fleet run: the local report's per-stream figures (from each stream's last
shard) plus where each stream ran: its node, its assignments and reassignments, and the
nodes the driver saw, with how long each lost node took to be noticed."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from videoclf.config.schema import redact
from videoclf.core.errors import ResourceError, SourceGaveUp, VideoclfError


def fleet_result(fleet: Any, elapsed: float) -> Any:
    """The run's RunResult: its error (shards that failed, then streams no node had room
    for) and report.json."""
    from videoclf.supervision.supervisor import RunResult

    err: Optional[VideoclfError] = None
    if fleet.errors:
        err = SourceGaveUp("; ".join(fleet.errors))
    waiting = [s.cfg.name for s in fleet.streams.values() if s.waiting_since is not None]
    if waiting and err is None:
        err = ResourceError(f"no node had room for {', '.join(waiting)} at the end of the run")
    report = fleet_report(fleet, elapsed, err)
    return RunResult(report, err.exit_code if err else 0, err)


def fleet_report(fleet: Any, elapsed: float, err: Optional[VideoclfError]) -> dict[str, Any]:
    streams = {}
    for name, s in fleet.streams.items():
        if s.waiting_since is not None:
            import time

            s.unassigned_s += time.monotonic() - s.waiting_since
        last_node = s.assignments[-1]["node"] if s.assignments else None
        streams[name] = {**s.report, "source": redact(s.cfg.source), "frames": s.frames,
                         "last_frame": s.last if s.frames else None, "end": s.ended,
                         "node": last_node, "assignments": s.assignments, "reassignments": s.reassignments,
                         "unassigned_s": round(s.unassigned_s, 2)}
    nodes = {nid: {"address": n.address, "capacity": n.capacity, "alive": True,
                   "streams": sorted(x for x, st in fleet.streams.items() if st.assignments
                                     and st.assignments[-1]["node"] == nid)}
             for nid, n in fleet.nodes.items()}
    for nid, d in fleet.dead.items():
        nodes[nid] = {**nodes.get(nid, {}), "alive": False, **d}
    report = {
        "fleet": {"address": fleet.address, "nodes": nodes,
                  "detection_s": [d["detected_after_s"] for d in fleet.dead.values()]},
        "streams": streams,
        "target_fps": fleet.cfg.target_fps,
        "model": getattr(fleet, "model", None),
        "elapsed_s": round(elapsed, 3),
        "restarts": {},
        "alerts": fleet.central.stats(),
        **({"mqtt": fleet.central.mqtt.stats().to_json()} if fleet.central.mqtt is not None else {}),
        "error": None if err is None else {"kind": type(err).__name__, "message": str(err)},
    }
    path = os.path.join(fleet.cfg.output.dir, "report.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)
    return report
