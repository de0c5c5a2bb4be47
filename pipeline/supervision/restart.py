"""Restart policy for crashed stages: which failures are restarted, and how often.

Each process is a fault domain (a stream's decoder, the classifier, the sink) and is
restarted alone (``pipeline/supervision/domains.py``): the hand-overs between processes take no lock
that a killed process could hold (``pipeline/ipc/transport.py``), so the survivors go on. The
limit counts restarts per domain over a sliding minute.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from videoclf.core.errors import StageError, VideoclfError

WINDOW_S = 60.0


@dataclass
class RestartPolicy:
    enabled: bool
    per_min: int = 5
    times: dict[str, deque] = field(default_factory=dict)  # per domain: monotonic times of restarts in the window
    counts: dict[str, int] = field(default_factory=dict)  # per domain (stage title), for report.json

    def allow(self, err: VideoclfError, stage: str, now: Optional[float] = None) -> bool:
        """True (and counted) when this failure should be answered by a restart of its domain."""
        # bad config or input (exit code 2) would fail again at once: only runtime deaths restart
        if not self.enabled or not stage or err.exit_code != 1:
            return False
        now = time.monotonic() if now is None else now
        times = self.times.setdefault(stage, deque())
        while times and now - times[0] > WINDOW_S:
            times.popleft()
        if len(times) >= self.per_min:
            return False
        times.append(now)
        self.counts[stage] = self.counts.get(stage, 0) + 1
        return True

    def exhausted(self, err: VideoclfError, stage: str = "") -> VideoclfError:
        """The error to fail with once the limit is reached: says that restarts were tried."""
        recent = len(self.times.get(stage, ()))
        if not self.enabled or not recent or err.exit_code != 1:
            return err
        return StageError(f"{err} (after {recent} restart(s) of {stage} in the last minute; "
                          f"limit supervision.max_restarts_per_min={self.per_min})")

    @property
    def total(self) -> int:
        return sum(self.counts.values())
