"""Restart policy for crashed stages: which failures are restarted, and how often.

A restart rebuilds the whole stage graph (fresh pools, queues and processes) from the same
picklable specs instead of respawning only the dead process: a process killed while it held
a multiprocessing queue's internal lock (a reader blocks in ``get(timeout)`` holding it) or a
pool slot would leave that queue or slot unusable forever, and no survivor can tell. A fresh
graph is always consistent; the cost is one model load per restart.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from pipeline.errors import StageError, VideoclfError

WINDOW_S = 60.0


@dataclass
class RestartPolicy:
    enabled: bool
    per_min: int = 5
    times: deque = field(default_factory=deque)  # monotonic times of restarts in the window
    counts: dict[str, int] = field(default_factory=dict)  # per stage title, for report.json

    def allow(self, err: VideoclfError, stage: str, now: Optional[float] = None) -> bool:
        """True (and counted) when this failure should be answered by a restart."""
        # bad config or input (exit code 2) would fail again at once: only runtime deaths restart
        if not self.enabled or not stage or err.exit_code != 1:
            return False
        now = time.monotonic() if now is None else now
        while self.times and now - self.times[0] > WINDOW_S:
            self.times.popleft()
        if len(self.times) >= self.per_min:
            return False
        self.times.append(now)
        self.counts[stage] = self.counts.get(stage, 0) + 1
        return True

    def exhausted(self, err: VideoclfError) -> VideoclfError:
        """The error to fail with once the limit is reached: says that restarts were tried."""
        if not self.enabled or not self.times or err.exit_code != 1:
            return err
        return StageError(f"{err} (after {len(self.times)} restart(s) in the last minute; "
                          f"limit supervision.max_restarts_per_min={self.per_min})")

    @property
    def total(self) -> int:
        return sum(self.counts.values())
