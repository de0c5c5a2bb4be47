"""The run as the HTTP API sees it (``videoclf.observe.control.StreamControl``): readiness
from the supervisor's state; streams are not yet added or removed while a run goes on."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from videoclf.config.errors import format_errors
from videoclf.config.schema import StreamConfig
from videoclf.core.errors import ConfigError, StreamExists, StreamNotFound
from videoclf.observe.web import stream_rows


class Plane:
    """Read from the web server's threads: it only reads the supervisor's state."""

    def __init__(self, sup: Any) -> None:
        self.sup = sup

    def ready(self) -> tuple[bool, str]:
        domains, state = getattr(self.sup, "domains", None), self.sup.state
        if state.error is not None:
            return False, "the run failed"
        if domains is None:
            return False, "starting"
        classifier, sink = domains.plan.classifier.title, domains.plan.sink_title
        if classifier not in state.ready:
            return False, "model loading"
        if sink not in state.ready:
            return False, "sink starting"
        gave_up = [r.name for r in stream_rows(self.sup.cfg, state.stats.snapshot(), False) if r.status == "gave up"]
        if gave_up:
            return False, f"stream {', '.join(gave_up)} gave up"
        return True, ""

    def streams(self) -> list[StreamConfig]:
        return list(self.sup.cfg.streams)

    def add_stream(self, stream: dict[str, Any]) -> StreamConfig:
        try:
            new = StreamConfig.model_validate(stream)
        except ValidationError as err:
            raise ConfigError("\n".join(format_errors(err, StreamConfig, "stream", None, stream))) from None
        if new.name in {s.name for s in self.sup.cfg.streams}:
            raise StreamExists(f"stream {new.name!r} is already running")
        raise ConfigError("adding a stream to a running run is not supported yet")

    def remove_stream(self, name: str) -> None:
        if name not in {s.name for s in self.sup.cfg.streams}:
            raise StreamNotFound(f"no stream named {name!r}")
        raise ConfigError("removing a stream from a running run is not supported yet")
