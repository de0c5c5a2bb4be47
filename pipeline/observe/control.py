"""What the web API asks of the run: readiness, the running streams, adding and removing one.

The supervisor hands an implementation to ``Services``; the web app calls it from its worker
threads, so an implementation must be thread-safe."""
from __future__ import annotations

from typing import Any, Protocol

from videoclf.config.schema import Config, StreamConfig
from videoclf.core.errors import ConfigError, StreamNotFound


class StreamControl(Protocol):
    def ready(self) -> tuple[bool, str]:
        """(True, "") when frames are classified, else (False, why): "model loading", …"""

    def streams(self) -> list[StreamConfig]:
        """The running streams' configs."""

    def add_stream(self, stream: dict[str, Any]) -> StreamConfig:
        """Start one stream (a ``streams:`` entry); raises ConfigError (invalid) or StreamExists."""

    def remove_stream(self, name: str) -> None:
        """Stop one stream; raises StreamNotFound."""


class FixedStreams:
    """The config's streams, always ready, none added or removed: for a web view started
    without a supervisor's control (a test, a tool)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def streams(self) -> list[StreamConfig]:
        return list(self.cfg.streams)

    def add_stream(self, stream: dict[str, Any]) -> StreamConfig:
        raise ConfigError("streams cannot be added to this run")

    def remove_stream(self, name: str) -> None:
        if name not in {s.name for s in self.cfg.streams}:
            raise StreamNotFound(f"no stream named {name!r}")
        raise ConfigError("streams cannot be removed from this run")
