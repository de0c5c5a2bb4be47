"""Config models of the watched outputs: alert rules and listen addresses.

Kept out of config.py so that module stays small; config.py only adds the fields."""
from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

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

