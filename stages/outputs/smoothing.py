"""Smoothed labels and label changes, per stream, in the sink.

The sink sees each classified frame's top-k (label, score). A ``Smoother`` averages them over
the stream's classified frames (a window of N, or an EMA), a label missing from a frame's
top-k counting as 0 there, as tracker-side smoothers do (supervision's DetectionsSmoother):
neither the classifier nor the result records change. Frames a rate, keyframes only or a
motion gate passed over never reach the sink, so they are not in the window.

A ``ChangeDetector`` turns the smoothed top-1 into ``label_change`` events with hysteresis: a
new label fires once it has been the smoothed top-1 (at ``min_score`` or more) for
``for_frames`` classified frames in a row; one that flips back before then fires nothing. A
stream's first label is its starting point, not a change: it fires no event (an operator does
not want one event per camera at every start).

The state lives in the sink process and starts empty when the sink starts (a restart after a
crash, or a new run): the window fills again over the next frames and the first label after
the start fires nothing, so a change that happened while the sink was down is not reported."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from videoclf.config.smoothing import LabelChange, SmoothOptions

Top = tuple[tuple[str, float], ...]

EMA_FLOOR = 1e-4  # an EMA label whose score fell below this is forgotten (bounded state)
ROUND = 5  # smoothed scores are rounded like the classifier's


class Smoother:
    """One stream's smoothed top-k, updated once per classified frame."""

    def __init__(self, opts: SmoothOptions, k: int) -> None:
        self.opts, self.k = opts, k
        self.window: deque[Top] = deque()
        self.sums: dict[str, float] = {}  # window: each label's sum over the window; ema: its average
        self.seen: dict[str, int] = {}  # window: frames of the window that have the label

    def update(self, top: Sequence[tuple[str, float]]) -> Top:
        """The smoothed top-k after this frame, best first."""
        if self.opts.window is not None:
            n = self._add(top)
        else:
            self._ema(top)
            n = 1
        best = sorted(self.sums.items(), key=lambda kv: (-kv[1], kv[0]))[:self.k]
        return tuple((lbl, round(s / n, ROUND)) for lbl, s in best)

    def _add(self, top: Sequence[tuple[str, float]]) -> int:
        frame = tuple((lbl, float(s)) for lbl, s in top)
        self.window.append(frame)
        for lbl, s in frame:
            self.sums[lbl] = self.sums.get(lbl, 0.0) + s
            self.seen[lbl] = self.seen.get(lbl, 0) + 1
        assert self.opts.window is not None
        if len(self.window) > self.opts.window:
            for lbl, s in self.window.popleft():
                self.seen[lbl] -= 1
                if self.seen[lbl] == 0:  # gone from the window: exactly 0, no rounding left behind
                    del self.seen[lbl], self.sums[lbl]
                else:
                    self.sums[lbl] -= s
        return len(self.window)

    def _ema(self, top: Sequence[tuple[str, float]]) -> None:
        a = self.opts.ema
        assert a is not None
        now = {lbl: float(s) for lbl, s in top}
        if not self.sums:  # the first frame is the average so far
            self.sums = now
            return
        for lbl in list(self.sums):
            self.sums[lbl] = (1 - a) * self.sums[lbl] + a * now.pop(lbl, 0.0)
            if self.sums[lbl] < EMA_FLOOR:
                del self.sums[lbl]
        for lbl, s in now.items():
            self.sums[lbl] = a * s


@dataclass
class Change:
    """A confirmed label change: the new label held from ``since`` (frame, pts) to now."""

    previous: tuple[str, float]  # the label before, with its smoothed score now (0 when out of the top-k)
    current: tuple[str, float]
    since_frame: int
    since_pts: Optional[float]


class ChangeDetector:
    """One stream's smoothed top-1 → label changes, with hysteresis (see the module's note)."""

    def __init__(self, opts: LabelChange) -> None:
        self.opts = opts
        self.label: Optional[str] = None  # the stream's current label (None until its first one held)
        self.candidate: Optional[str] = None
        self.run = 0
        self.since: tuple[int, Optional[float]] = (0, None)

    def update(self, smoothed: Sequence[tuple[str, float]], frame: int, pts: Optional[float]) -> Optional[Change]:
        best = smoothed[0] if smoothed else None
        if best is None or best[1] < self.opts.min_score or best[0] == self.label:
            self.candidate, self.run = None, 0  # a flicker back (or nothing sure enough) ends the candidate's run
            return None
        if best[0] != self.candidate:
            self.candidate, self.run, self.since = best[0], 0, (frame, pts)
        self.run += 1
        if self.run < self.opts.for_frames:
            return None
        prev = self.label
        self.label, self.candidate, self.run = best[0], None, 0
        if prev is None:
            return None  # the stream's first label: where it starts, not a change
        scores = dict(smoothed)
        return Change((prev, scores.get(prev, 0.0)), best, *self.since)


def change_event(stream: str, frame: int, pts: Optional[float], epoch: float, change: Change,
                 top: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """The ``label_change`` event (events.jsonl line, MQTT payload, webhook body). ``frame``,
    ``pts`` and ``time`` are the frame that confirmed it, ``top`` its raw top-k; ``since_*`` the
    first frame of the new label's run. Built here only, so other outputs can add keys to it."""
    return {"event": "label_change", "stream": stream, "frame": frame,
            "pts": None if pts is None else round(pts, 6), "time": round(epoch, 6),
            "previous": {"label": change.previous[0], "score": change.previous[1]},
            "current": {"label": change.current[0], "score": change.current[1]},
            "since_frame": change.since_frame,
            "since_pts": None if change.since_pts is None else round(change.since_pts, 6),
            "top": [{"label": lbl, "score": s} for lbl, s in top]}


class LabelChanges:
    """Every stream's change detector; ``emit(options, event)`` gets each event (the sink's
    ``EventLog``: events.jsonl, the options' webhook, MQTT). ``options`` holds, per stream, its
    ``LabelChange`` or None."""

    def __init__(self, options: Sequence[Optional[LabelChange]], emit: Any, clip: Any = None) -> None:
        self.options = list(options)
        self.emit = emit
        self.clip = clip  # (stream index, start, pre_s, post_s, label) -> the event's clip fields (OutputsSink.clip_for)
        self.detectors: dict[int, ChangeDetector] = {}
        self.fired = 0

    def add_stream(self, stream: int, opts: Optional[LabelChange]) -> None:
        """A stream added or changed while the run goes on: it starts afresh (its first label fires nothing)."""
        self.options.extend([None] * (stream + 1 - len(self.options)))
        self.options[stream] = opts
        self.detectors.pop(stream, None)

    def update(self, name: str, result: Any) -> None:
        """One classified frame (a ``core.records.Result``): its smoothed top-k, else its raw one."""
        f = result.frame
        opts = self.options[f.stream] if f.stream < len(self.options) else None
        if opts is None:
            return
        det = self.detectors.get(f.stream)
        if det is None:
            det = self.detectors[f.stream] = ChangeDetector(opts)
        change = det.update(result.smoothed if result.smoothed is not None else result.top, f.seq, f.pts)
        if change is not None:
            self.fired += 1
            event = change_event(name, f.seq, f.pts, f.time, change, result.top)
            if opts.clip is not None:  # from pre_s before the new label's first frame (on the stream's clock)
                start = change.since_pts if change.since_pts is not None else f.time
                event.update((self.clip and self.clip(f.stream, start, opts.clip.pre_s, opts.clip.post_s,
                                                      change.current[0])) or {"clip": None})
            self.emit(opts, event)
