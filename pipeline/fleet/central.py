"""What the fleet's driver writes and publishes itself: the shards' alert events gathered into
``output.dir/events.jsonl`` (each once, with the node that ran the stream), and MQTT.

MQTT is published here, not by each shard: the driver is the one place that knows which
shard holds a stream's current assignment, so a shard that was replaced (its node declared
dead, then back) publishes nothing; there is one client and one ``availability`` topic for
the run (shards of their own would mark each other offline with their last wills, and
would need client ids of their own); the messages equal the lines of the central
``events.jsonl``; and the nodes need no route to the broker nor its password.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Optional

from videoclf.stages.outputs.appendlog import AppendLog
from videoclf.config.schema import Config
from videoclf.stages.outputs.labellog import day_of_line

STATE_EVERY_S = 1.0  # like a local run: each stream's state at most once a second, when it changed


class Central:
    def __init__(self, cfg: Config, names: list[str]) -> None:
        self.path = os.path.join(cfg.output.dir, "events.jsonl")
        self.file: Any = None
        self.events = self.fenced = 0
        self.mqtt: Any = None
        self._last: dict[str, dict[str, Any]] = {}
        self._frames: dict[str, tuple[float, int]] = {}  # stream → (when, frames) at the last state tick
        self._next_state = 0.0
        if cfg.output.mqtt:
            from videoclf.stages.outputs.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(cfg.output.mqtt, cfg.output.mqtt.client_id, availability=True)
            self.mqtt.discovery(names)

    def add_streams(self, names: list[str]) -> None:
        if self.mqtt is not None:
            self.mqtt.discovery(names)

    def gather(self, lines: list[str], where: dict[str, Any], current: Callable[[str], bool]) -> None:
        """A shard's new event lines into the central events.jsonl, with ``where`` (its node
        and shard) added; only the events of streams the shard holds the current assignment
        of (``current(stream)``): a replaced shard's are counted in ``fenced``."""
        for line in lines:
            try:
                ev = json.loads(line)
                stream = ev["stream"]
            except (ValueError, KeyError, TypeError):
                continue  # no event line (torn lines are never handed over)
            if not current(stream):
                self.fenced += 1
                continue
            self.event({**ev, **where})

    def event(self, ev: dict[str, Any]) -> None:
        if self.file is None:  # append-only, whole lines, rotated by day like a local run's
            self.file = AppendLog(self.path, day_of_line=day_of_line).open()
        line = json.dumps(ev, separators=(",", ":"))
        self.file.write(line)
        self.events += 1
        if self.mqtt is not None:
            self.mqtt.publish(self.mqtt.topic(ev["stream"], "events"), line, kind="events")

    def tick(self, streams: dict[str, Any], force: bool = False) -> None:
        """Publish each stream's state (``streams``: the fleet's name → _Stream) when it changed."""
        now = time.monotonic()
        if self.mqtt is None or (now < self._next_state and not force):
            return
        self._next_state = now + STATE_EVERY_S
        for name, s in streams.items():
            payload = self._state(name, s, now)
            if payload != self._last.get(name):
                self._last[name] = payload
                self.mqtt.publish(self.mqtt.topic(name, "state"), payload, retain=True)

    def _state(self, name: str, s: Any, now: float) -> dict[str, Any]:
        then, before = self._frames.get(name, (now, s.frames))
        self._frames[name] = (now, s.frames)
        fps = round((s.frames - before) / (now - then), 2) if now > then else 0.0
        if s.ended:
            status = "ended"
        elif s.node is None:
            status = "waiting"  # no node has room for it
        else:
            status = "live" if s.frames else "starting"
        label, score = s.top if s.top else (None, None)
        return {"status": status, "connected": status in ("live", "starting"), "fps": fps if s.node else 0.0,
                "frames": s.frames, "label": label, "score": score, "node": s.node}

    def stats(self) -> dict[str, Any]:
        """report.json's ``alerts``: events gathered, and those of replaced shards left out."""
        return {"events": self.events, "fenced": self.fenced}

    def close(self, streams: Optional[dict[str, Any]] = None) -> None:
        if streams is not None:
            self.tick(streams, force=True)  # the final state: ended, with every frame gathered
        if self.mqtt is not None:
            self.mqtt.close()
        if self.file is not None:
            self.file.close()
