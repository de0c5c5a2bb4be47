"""Servers the supervisor runs beside the pipeline: Prometheus /metrics and the web view."""
from __future__ import annotations

import logging
from typing import Any, Callable

from pipeline.config import Config
from pipeline.errors import ResourceError
from pipeline.outputs_config import parse_address

log = logging.getLogger("videoclf")


class Services:
    """Start what the config asks for; ``stop()`` is bounded and safe to call twice."""

    def __init__(self, cfg: Config, get: Callable[[], dict[str, dict[str, Any]]]) -> None:
        """``get`` returns the supervisor's latest stats per stage (a new dict after a restart)."""
        self.servers: list[Any] = []
        self.urls: dict[str, str] = {}
        names = [s.name for s in cfg.streams]
        try:
            if cfg.output.metrics:
                from pipeline.prom import start_metrics

                host, port = parse_address(cfg.output.metrics)
                self.servers.append(self._bind("output.metrics", host, port, lambda: start_metrics(host, port, names, get)))
                self.urls["metrics"] = f"http://{host}:{self.servers[-1].server_address[1]}/metrics"
            if cfg.output.web:
                from pipeline.web import start_web

                host, port = parse_address(cfg.output.web)
                self.servers.append(self._bind("output.web", host, port, lambda: start_web(host, port, cfg, get)))
                self.urls["web"] = f"http://{host}:{self.servers[-1].server_address[1]}/"
        except BaseException:
            self.stop()
            raise
        for what, url in self.urls.items():
            log.info("%s: %s", what, url)

    @staticmethod
    def _bind(key: str, host: str, port: int, start: Any) -> Any:
        try:
            return start()
        except OSError as exc:
            raise ResourceError(f"{key}: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc

    def stop(self) -> None:
        while self.servers:
            server = self.servers.pop()
            server.shutdown()
            server.server_close()
