"""Config models of the watched outputs: alert rules and listen addresses.

Kept out of config.py so that module stays small; config.py only adds the fields."""
from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ADDR = re.compile(r"^(?:(?P<host>[A-Za-z0-9_.-]+|\[[0-9a-fA-F:]+\])?:)?(?P<port>\d{1,5})$")


class AlertRule(BaseModel):
    """One alert: any label of ``when`` in a frame's top-k with at least ``min_score``,
    on ``for_frames`` consecutive frames, opens an event; no new event of this rule on the
    same stream until ``cooldown_s`` after the previous one closed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: tuple[str, ...] = Field(min_length=1, description="labels that trigger the rule (any of them)")
    min_score: float = Field(0.5, ge=0, le=1, description="lowest score that counts as seen")
    for_frames: int = Field(1, ge=1, le=100_000, description="consecutive frames needed to open an event")
    cooldown_s: float = Field(30.0, ge=0, description="quiet time after an event closes before the rule fires again")
    webhook: Optional[str] = Field(None, pattern=r"^https?://", description="URL that receives each event as a JSON POST")
    webhook_timeout_s: float = Field(2.0, gt=0, le=60, description="per-attempt HTTP timeout of the webhook")
    webhook_retries: int = Field(2, ge=0, le=10, description="extra attempts after a failed webhook POST")


def parse_address(value: str, key: str = "") -> tuple[str, int]:
    """'8080', ':8080', 'host:8080' → (host, port); the host defaults to loopback."""
    m = _ADDR.match(value.strip())
    if not m or not 0 < int(m.group("port")) < 65536:
        raise ValueError(f"{key}expected PORT, :PORT or HOST:PORT")
    return (m.group("host") or "127.0.0.1").strip("[]"), int(m.group("port"))


def check_address(value: Optional[str]) -> Optional[str]:
    if value is not None:
        parse_address(value)  # the config error names the key and the value
    return value



_MQTT = re.compile(r"^(?P<scheme>mqtts?)://(?:(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@)?(?P<host>[A-Za-z0-9_.-]+|\[[0-9a-fA-F:]+\])"
                   r"(?::(?P<port>\d{1,5}))?/?$")


class MqttConfig(BaseModel):
    """Where alert events and stream state are published (Home Assistant, Node-RED, …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="mqtt://[user[:password]@]host[:port] (mqtts:// for TLS); put the password in ${VAR}")
    prefix: str = Field("videoclf", pattern=r"^[^#+\s]+$", description="topic prefix: <prefix>/<stream>/events|state, "
                                                                      "<prefix>/availability")
    qos: int = Field(1, ge=0, le=2, description="MQTT QoS of every message")
    client_id: str = Field("videoclf", min_length=1, max_length=64, description="MQTT client id (the sink process "
                                                                                "adds '-events')")
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery configs (label and FPS sensors per stream)")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery topic prefix")
    queue: int = Field(1000, ge=1, le=1_000_000, description="messages kept while the broker is away; past it new ones "
                                                             "are dropped and counted")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        m = _MQTT.match(v)
        if not m or (m.group("port") and not 0 < int(m.group("port")) < 65536):
            raise ValueError("expected mqtt://[user[:password]@]host[:port] or mqtts://…")
        return v

    @property
    def parts(self) -> dict:
        m = _MQTT.match(self.url)
        assert m is not None
        tls = m.group("scheme") == "mqtts"
        return {"tls": tls, "host": m.group("host").strip("[]"), "port": int(m.group("port") or (8883 if tls else 1883)),
                "user": m.group("user") or None, "password": m.group("pw")}
