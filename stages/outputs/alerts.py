"""Alert rules → events.jsonl lines, JPEG snapshots and webhook POSTs.

An event opens when a rule has held for ``for_frames`` consecutive frames (one line with
``"event": "open"``) and closes on the first frame where it no longer holds or when the
stream ends (``"event": "close"``, with end time, peak score and frame count). Each event
has both stream time (pts seconds) and wall-clock epoch times. Cooldowns run on the stream's
clock: stream time for a file, so a file classified faster than real time gives the same
events on every run, and the wall clock for a live stream (see ``AlertEngine``). The
webhook runs in a background thread behind a bounded queue: a slow or dead receiver costs
the pipeline nothing but dropped notifications."""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from videoclf.stages.outputs.appendlog import AppendLog, DiskFull
from videoclf.core.sinkstats import AlertStats, WebhookStats
from videoclf.config.schema import redact
from videoclf.core.errors import ResourceError
from videoclf.config.outputs import AlertRule

log = logging.getLogger(__name__)

QUEUE_MAX = 256  # pending webhook posts; beyond this new ones are dropped and counted
BACKOFF_S = 0.5
CLOSE_S = 2.0  # at shutdown, time left to an in-flight webhook POST
PENDING_MAX = 10_000  # event lines kept in memory while the disk is full


# an event clip's fields (``clip``, ``clip_at_s``) for a rule, the event's start (stream time) and label
Clip = Callable[[AlertRule, float, str], Optional[dict[str, Any]]]


@dataclass
class _RuleState:
    run: int = 0  # consecutive frames that matched
    run_start: tuple[float, float] = (0.0, 0.0)  # (stream time, epoch) of the run's first frame
    event: Optional[dict[str, Any]] = None  # the open event
    last_at: float = 0.0  # the stream's clock at the open event's last frame
    quiet_until: float = float("-inf")  # the stream's clock before which the rule may not fire


def match(rule: AlertRule, top: Sequence[tuple[str, float]]) -> Optional[tuple[str, float]]:
    """The best (label, score) of the frame's top-k that the rule watches for, if any."""
    hits = [(lbl, s) for lbl, s in top if lbl in rule.when and s >= rule.min_score]
    return max(hits, key=lambda h: h[1]) if hits else None


class AlertEngine:
    """Evaluates every rule on every frame of every stream; ``emit`` gets each event dict.

    ``live`` maps each live stream's name to its longest gap between frames (its watchdog).
    A live stream runs on the wall clock (the frame's epoch time): its camera's pts may start
    again after a reconnect, and a cooldown must last ``cooldown_s`` real seconds. A gap longer
    than its bound means the camera was lost: the frames on either side are not consecutive,
    so the run of matching frames starts again and an open event closes at its last frame.
    Other streams run on stream time. A clock that steps back (an NTP correction, a pts that
    starts again) moves the cooldowns back with it, so it never lengthens a quiet time."""

    def __init__(self, rules: Sequence[AlertRule], emit: Callable[[AlertRule, dict[str, Any]], None],
                 live: Mapping[str, float] | None = None) -> None:
        self.rules = list(rules)
        self.emit = emit
        self.live = dict(live or {})
        self.state: dict[tuple[str, int], _RuleState] = {}
        self.clock: dict[str, float] = {}  # per stream: its clock at the last frame
        self.opened = 0

    def _tick(self, stream: str, now: float) -> None:
        """Follow the stream's clock to ``now``: a step back shifts its cooldowns, a live gap
        ends its runs and events."""
        last = self.clock.get(stream)
        self.clock[stream] = now
        if last is None:
            return
        gap = self.live.get(stream)
        if now >= last and (gap is None or now - last <= gap):
            return  # the usual case: nothing to adjust
        for i, rule in enumerate(self.rules):
            st = self.state.get((stream, i))
            if st is None:
                continue
            if now < last:
                st.quiet_until -= last - now
            else:
                st.run = 0
                self._close(rule, st, stream)

    def update(self, stream: str, t: float, epoch: float, top: Sequence[tuple[str, float]],
               snapshot: Callable[[str], Optional[str]], smoothed: Optional[Sequence[tuple[str, float]]] = None,
               clip: Optional[Clip] = None) -> None:
        """One frame: ``t`` its stream time (pts, else its epoch), ``epoch`` its wall-clock time;
        ``smoothed``: the stream's smoothed top-k, which ``smoothed`` rules match instead of ``top``;
        ``clip(rule, start, label)``: the event clip's fields for a rule with ``clip`` set."""
        now = epoch if stream in self.live else t
        self._tick(stream, now)
        for i, rule in enumerate(self.rules):
            st = self.state.setdefault((stream, i), _RuleState())
            hit = match(rule, smoothed if rule.smoothed and smoothed is not None else top)
            if hit is None:
                st.run = 0
                self._close(rule, st, stream)
                continue
            st.run += 1
            if st.run == 1:
                st.run_start = (t, epoch)
            ev = st.event
            if ev is not None:
                ev["end_pts"], ev["end_time"], ev["frames"] = round(t, 6), round(epoch, 6), ev["frames"] + 1
                st.last_at = now
                if hit[1] > ev["peak_score"]:
                    ev["label"], ev["peak_score"] = hit
            elif st.run >= rule.for_frames and now >= st.quiet_until:
                st.event = {"event": "open", "stream": stream, "rule": i, "label": hit[0],
                            "start_pts": round(st.run_start[0], 6), "start_time": round(st.run_start[1], 6),
                            "end_pts": None, "end_time": None, "peak_score": hit[1], "frames": st.run,
                            "snapshot": snapshot(hit[0])}
                if rule.clip is not None:
                    st.event.update((clip and clip(rule, st.run_start[0], hit[0])) or {"clip": None})
                self.opened += 1
                self.emit(rule, dict(st.event))
                st.event["end_pts"], st.event["end_time"] = round(t, 6), round(epoch, 6)
                st.last_at = now

    def _close(self, rule: AlertRule, st: _RuleState, stream: str) -> None:
        if st.event is not None:
            st.event["event"] = "close"
            st.quiet_until = st.last_at + rule.cooldown_s
            self.emit(rule, st.event)
            st.event = None

    def end(self, stream: str) -> None:
        """Close the stream's open events (end of file, or the run stops)."""
        for (name, i), st in self.state.items():
            if name == stream:
                st.run = 0
                self._close(self.rules[i], st, stream)

    def end_all(self) -> None:
        for stream in {name for name, _ in self.state}:
            self.end(stream)


class Webhook:
    """POSTs JSON in a daemon thread: bounded queue, per-attempt timeout, a few retries."""

    def __init__(self) -> None:
        self.q: queue.Queue[tuple[AlertRule, bytes]] = queue.Queue(QUEUE_MAX)
        self.closing = threading.Event()
        self.sent = self.failed = self.dropped = 0
        self.thread = threading.Thread(target=self._loop, name="webhook", daemon=True)
        self.thread.start()

    def submit(self, rule: AlertRule, event: dict[str, Any]) -> None:
        """Never blocks: when the receiver cannot keep up, the notification is dropped."""
        try:
            self.q.put_nowait((rule, json.dumps(event).encode()))
        except queue.Full:
            self.dropped += 1

    def _loop(self) -> None:
        while not (self.closing.is_set() and self.q.empty()):
            try:
                rule, body = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if self._post(rule, body):
                self.sent += 1
            else:
                self.failed += 1

    def _post(self, rule: AlertRule, body: bytes) -> bool:
        assert rule.webhook
        for attempt in range(rule.webhook_retries + 1):
            req = urllib.request.Request(rule.webhook, body, {"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=rule.webhook_timeout_s) as resp:
                    if resp.status < 300:
                        return True
            except (urllib.error.URLError, OSError, ValueError) as exc:
                err = exc
            else:
                err = RuntimeError(f"HTTP {resp.status}")
            if self.closing.is_set() or attempt == rule.webhook_retries:
                log.warning("webhook %s failed: %s", redact(rule.webhook), err)
                return False
            self.closing.wait(BACKOFF_S * 2 ** attempt)
        return False

    def close(self, timeout: float) -> None:
        """Stop retrying, give in-flight posts ``timeout`` seconds, then leave (daemon thread)."""
        self.closing.set()
        self.thread.join(timeout)
        left = self.q.qsize()
        if left or self.thread.is_alive():
            self.dropped += left
            log.warning("webhook: %d notification(s) not delivered at shutdown", left + self.thread.is_alive())

    def stats(self) -> WebhookStats:
        return WebhookStats(sent=self.sent, failed=self.failed, dropped=self.dropped)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60] or "x"


class EventLog:
    """``<dir>/events.jsonl`` (append-only, rotated by day: ``stages/outputs/appendlog.py``) plus the
    webhook for rules that name one. A line the full disk refuses waits in memory (bounded,
    in order) and is written when space is back."""

    def __init__(self, out_dir: str, webhook: bool, forward: Optional[Callable[[str, str], None]] = None) -> None:
        """``forward(stream, line)``: each event's line, once written or waiting for the disk, is
        also handed on (to the supervisor, whose MQTT client publishes it); it must not block."""
        from videoclf.stages.outputs.labellog import day_of_line

        self.path = os.path.join(out_dir, "events.jsonl")
        self.file = AppendLog(self.path, day_of_line=day_of_line).open()
        self.waiting: deque[tuple[str, float]] = deque()  # lines the full disk refused, oldest first
        self.lost = 0  # past PENDING_MAX while the disk stayed full
        self.webhook = Webhook() if webhook else None
        self.forward = forward
        self.lines = 0

    def __call__(self, rule: AlertRule, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"))
        self.waiting.append((line, float(event.get("time") or time.time())))
        if len(self.waiting) > PENDING_MAX:
            self.waiting.popleft()
            self.lost += 1
        self.flush()
        if rule.webhook and self.webhook:
            self.webhook.submit(rule, event)
        if self.forward is not None:
            self.forward(event["stream"], line)

    def flush(self) -> None:
        """Write the lines that wait, in order, until the disk refuses one."""
        while self.waiting:
            line, epoch = self.waiting[0]
            try:
                self.file.write(line, epoch)
            except DiskFull:
                return
            except OSError as exc:
                raise ResourceError(f"{self.path}: cannot write an event ({exc.strerror or exc})") from exc
            self.waiting.popleft()
            self.lines += 1

    def close(self) -> None:
        if self.webhook:
            # bounded: a dead receiver delays shutdown by one timeout at most
            self.webhook.close(CLOSE_S)
        self.flush()
        if self.waiting:
            log.warning("%s: %d event line(s) not written: the disk stayed full", self.path, len(self.waiting))
        self.file.close()

    def stats(self) -> AlertStats:
        return AlertStats(events=self.lines, waiting_for_disk=len(self.waiting), lost_disk_full=self.lost,
                          webhook=self.webhook.stats() if self.webhook else None)
