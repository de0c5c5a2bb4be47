"""Servers the supervisor runs beside the pipeline: Prometheus /metrics, the web view, and the
run's one MQTT client (state, discovery, and the events the sink hands over)."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from videoclf.config.schema import Config
from videoclf.config.zones import logged_streams
from videoclf.core.errors import ResourceError
from videoclf.core.runstats import RunStats
from videoclf.config.outputs import parse_address

log = logging.getLogger("videoclf")


class Services:
    """Start what the config asks for; ``stop()`` is bounded and safe to call twice."""

    def __init__(self, cfg: Config, get: Callable[[], RunStats], control: Any = None) -> None:
        """``get`` returns the supervisor's latest stats (read from these servers' threads);
        ``control``: the run's ``videoclf.observe.control.StreamControl``, for the HTTP API."""
        self.servers: list[Any] = []
        self.urls: dict[str, str] = {}
        self.mqtt: Any = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        names = [lg.name for lg in logged_streams(cfg.streams)]  # a stream's zones: one each
        try:
            if cfg.output.mqtt:
                from videoclf.stages.outputs.mqtt import MqttPublisher

                self.mqtt = MqttPublisher(cfg.output.mqtt, cfg.output.mqtt.client_id, availability=True)
                self.mqtt.discovery(names)
                self._thread = threading.Thread(target=self._publish_state, args=(cfg, get), daemon=True,
                                                name="mqtt-state")
                self._thread.start()
            if cfg.output.metrics:
                from videoclf.observe.prom import start_metrics

                host, port = parse_address(cfg.output.metrics)
                self.servers.append(self._bind("output.metrics", host, port, lambda: start_metrics(host, port, names, get)))
                self.urls["metrics"] = f"http://{host}:{self.servers[-1].server_address[1]}/metrics"
            if cfg.output.web:
                from videoclf.observe.webserve import start_web  # Starlette and uvicorn: only when asked for
                from videoclf.plan import compose  # the web view classifies uploads with the run's stages

                host, port = cfg.output.web.address
                self.servers.append(self._bind("output.web", host, port,
                                               lambda: start_web(host, port, cfg, get, compose, control)))
                shown = f"[{host}]" if ":" in host else host
                self.urls["web"] = f"http://{shown}:{self.servers[-1].server_address[1]}/"
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

    def publish_event(self, stream: str, line: str) -> None:
        """One alert event's line (as written to events.jsonl) to ``<prefix>/<stream>/events``:
        only queued, never waits for the broker."""
        if self.mqtt is not None:
            self.mqtt.publish(self.mqtt.topic(stream, "events"), line, kind="events")

    def _publish_state(self, cfg: Config, get: Callable[[], RunStats]) -> None:
        """Each stream's state, retained, at most once a second (only when it changed)."""
        from videoclf.stages.outputs.mqtt import state_payload
        from videoclf.observe.web import stream_rows

        last: dict[str, dict[str, Any]] = {}
        announced = {lg.name for lg in logged_streams(cfg.streams)}
        while True:
            stopping = self._stop.wait(1.0)
            rows = stream_rows(cfg, get().snapshot())
            added = [r.name for r in rows if r.name not in announced]  # streams added while the run goes on
            if added:
                self.mqtt.discovery(added)
                announced.update(added)
            for row in rows:
                payload = state_payload(row)
                if payload != last.get(row.name):
                    last[row.name] = payload
                    self.mqtt.publish(self.mqtt.topic(row.name, "state"), payload, retain=True)
            if stopping:
                return

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        if self.mqtt is not None:
            self.mqtt.close()
        while self.servers:
            server = self.servers.pop()
            server.shutdown()
            server.server_close()
