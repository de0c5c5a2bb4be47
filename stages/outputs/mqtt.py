"""MQTT output (paho-mqtt): alert events, stream state, availability, Home Assistant discovery.

The broker is never in the pipeline's path: paho's network loop runs in its own thread,
``publish`` only queues, the queue is bounded (``output.mqtt.queue``) and what does not fit
is dropped and counted, and the client reconnects on its own (1 s to 30 s back-off). A
refused login is logged once, in one line, without the password. A run has one client, in
the supervisor: the sink hands each alert event over on its status channel (the
supervisor's ``Services.publish_event``), so state, discovery and events share one
connection, one login and one warning.

Topics (``prefix`` defaults to ``videoclf``):
- ``<prefix>/<stream>/events``: each alert open/close event, the same JSON as events.jsonl;
- ``<prefix>/<stream>/state``: retained, at most once a second: connected, FPS, drops,
  frames, the current top-1 label and score;
- ``<prefix>/availability``: retained ``online``; ``offline`` on a clean stop, and as the
  last will when the supervisor dies;
- ``<discovery_prefix>/sensor/videoclf_<stream>_{label,fps}/config``: Home Assistant MQTT
  discovery, so each stream's label and FPS appear as sensors with no YAML on that side.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Optional

from videoclf.config.outputs import MqttConfig
from videoclf.core.sinkstats import MqttStats

log = logging.getLogger(__name__)

_REFUSED = {4: "bad user name or password", 5: "not authorised", 134: "bad user name or password",
            135: "not authorised", 133: "client id refused"}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, client_id: str, availability: bool = False) -> None:
        import paho.mqtt.client as mqtt

        self.cfg = cfg
        self.availability = availability
        p = cfg.parts
        self.where = f"{'mqtts' if p['tls'] else 'mqtt'}://{p['host']}:{p['port']}"
        self.connects = 0
        self.counts: dict[str, list[int]] = {}  # kind of message (state, events, …) → [published, dropped]
        self.connected = False
        self.last_error: Optional[str] = None
        self._told: set[str] = set()
        self._lock = threading.Lock()
        self._on_connect_msgs: list[tuple[str, str, bool]] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if p["user"]:
            c.username_pw_set(p["user"], p["password"])
        if p["tls"]:
            c.tls_set(ca_certs=cfg.ca_file)
        c.max_queued_messages_set(cfg.queue)
        c.reconnect_delay_set(1, 30)
        if availability:
            c.will_set(self.topic("availability"), "offline", qos=cfg.qos, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.client = c
        c.connect_async(p["host"], p["port"], keepalive=30)
        c.loop_start()

    def topic(self, *parts: str) -> str:
        return "/".join((self.cfg.prefix, *parts))

    def _say_once(self, what: str) -> None:
        self.last_error = what
        if what not in self._told:
            self._told.add(what)
            log.warning("output.mqtt %s: %s (retrying in the background; the pipeline goes on)", self.where, what)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        code = getattr(reason, "value", reason)
        if code != 0:
            self._say_once(f"connection refused: {_REFUSED.get(int(code), str(reason))}")
            return
        self.connected = True
        self.connects += 1
        if self.connects > 1:
            log.info("output.mqtt %s: connected again", self.where)
        if self.availability:
            self.client.publish(self.topic("availability"), "online", qos=self.cfg.qos, retain=True)
        with self._lock:
            messages = list(self._on_connect_msgs)
        for topic, payload, retain in messages:
            self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if self.connected:
            self.connected = False
            if getattr(reason, "value", reason) != 0:
                self._say_once(f"broker went away ({reason})")

    def on_every_connect(self, topic: str, payload: Any, retain: bool = True) -> None:
        """Publish now and again after each reconnect (discovery configs)."""
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        with self._lock:
            self._on_connect_msgs.append((topic, text, retain))
        if self.connected:
            self.client.publish(topic, text, qos=self.cfg.qos, retain=retain)

    def publish(self, topic: str, payload: Any, retain: bool = False, kind: str = "state") -> bool:
        """Queue one message; False (and counted under ``kind``) when the queue is full."""
        import paho.mqtt.client as mqtt

        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        info = self.client.publish(topic, text, qos=self.cfg.qos, retain=retain)
        ok = info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.cfg.qos > 0)
        with self._lock:
            self.counts.setdefault(kind, [0, 0])[0 if ok else 1] += 1
        return ok

    def discovery(self, streams: list[str]) -> None:
        """Home Assistant sensors for each stream's top-1 label and FPS."""
        if not self.cfg.discovery:
            return
        device = {"identifiers": [f"videoclf_{_slug(self.cfg.client_id)}"], "name": "videoclf",
                  "manufacturer": "videoclf"}
        for name in streams:
            state = self.topic(name, "state")
            for key, unit, template in (("label", None, "{{ value_json.label }}"),
                                        ("fps", "fps", "{{ value_json.fps }}")):
                uid = f"videoclf_{_slug(name)}_{key}"
                cfg = {"name": f"{name} {key}", "unique_id": uid, "state_topic": state,
                       "value_template": template, "availability_topic": self.topic("availability"),
                       "device": device, **({"unit_of_measurement": unit} if unit else {})}
                self.on_every_connect(f"{self.cfg.discovery_prefix}/sensor/{uid}/config", cfg)

    @property
    def published(self) -> int:
        return sum(c[0] for c in self.counts.values())

    @property
    def dropped(self) -> int:
        return sum(c[1] for c in self.counts.values())

    def stats(self, kind: Optional[str] = None) -> MqttStats:
        """The client's figures; with ``kind``, the messages of that kind only."""
        published, dropped = self.counts.get(kind, [0, 0]) if kind else (self.published, self.dropped)
        return MqttStats(broker=self.where, connected=self.connected, published=published, dropped=dropped,
                         connects=self.connects, last_error=self.last_error)

    def close(self, timeout: float = 2.0) -> None:
        """Say offline (a clean stop), flush what is queued for up to ``timeout``, disconnect."""
        if self.availability and self.connected:
            info = self.client.publish(self.topic("availability"), "offline", qos=self.cfg.qos, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


def state_payload(row: Any) -> dict[str, Any]:
    """One stream's state message (JSON) from a web-view row (videoclf.observe.web.StreamRow)."""
    top = row.top
    label, score = (top[0][0], round(float(top[0][1]), 4)) if top else (None, None)
    return {"status": row.status, "connected": row.status in ("live", "starting"), "fps": round(row.fps, 2),
            "frames": row.frames, "decoded": row.decoded, "skipped": row.skipped, "dropped": row.dropped,
            "label": label, "score": score}
