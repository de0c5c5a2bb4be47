"""What the HTTP API asks of a running run: is it ready, which streams does it hold, add one,
remove one. The servers call from their own threads; every change is carried out on the
supervisor's thread (``serve``, from its loop) through the same path as an edit of the config
file: the file is edited first (atomically, ``videoclf.config.persist``), then read again and
applied (``videoclf.supervision.reconfig``), so a restart keeps what the API did."""
from __future__ import annotations

import os
import queue
from concurrent.futures import Future
from typing import Any, Callable, Optional

from videoclf.config import persist
from videoclf.config.load import load_config, parse_config
from videoclf.config.schema import StreamConfig
from videoclf.core.errors import ConfigError, StreamExists, StreamNotFound, VideoclfError
from videoclf.plan.compose import probe
from videoclf.supervision.reconfig import Reconfig

CALL_TIMEOUT_S = 60.0


class Plane:
    def __init__(self, reconfig: Reconfig, path: Optional[str], is_ready: Callable[[], tuple[bool, str]]) -> None:
        """``path``: the config file changes are written to (None: a run from a dict or a
        ``Config``: changes last until the run ends); ``is_ready``: the supervisor's readiness."""
        self.reconfig, self.path, self._ready = reconfig, path, is_ready
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._streams: tuple[StreamConfig, ...] = tuple(s for _, s in reconfig.stream_indices())
        self.open = True

    # -- from any thread -------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        return self._ready()

    def streams(self) -> list[StreamConfig]:
        """The streams the run holds (a snapshot taken on the supervisor's thread)."""
        return list(self._streams)

    def add_stream(self, stream: Any) -> StreamConfig:
        """``stream``: one mapping as written under ``streams:``. ``ConfigError`` when it is not
        valid, ``StreamExists`` when its name is taken."""
        return self._call(lambda: self._add(stream))

    def remove_stream(self, name: str) -> None:
        """``StreamNotFound`` when no stream has that name."""
        self._call(lambda: self._remove(name))

    def _call(self, fn: Callable[[], Any]) -> Any:
        if not self.open:
            raise VideoclfError("the run is stopping")
        fut: Future = Future()
        self._calls.put((fn, fut))
        return fut.result(CALL_TIMEOUT_S)

    # -- on the supervisor's thread -----------------------------------------------------
    def serve(self) -> None:
        """Carry out what was asked since the last call."""
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                break
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 (the caller's thread raises it)
                fut.set_exception(exc)
        self._streams = tuple(s for _, s in self.reconfig.stream_indices())

    def close(self) -> None:
        """The run is ending: calls are refused, and any still waiting are answered."""
        self.open = False
        while True:
            try:
                _, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            fut.set_exception(VideoclfError("the run is stopping"))

    def _add(self, stream: Any) -> StreamConfig:
        if not isinstance(stream, dict):
            raise ConfigError("a stream is an object with at least name and source")
        s = parse_config({"streams": [stream]}, "stream").streams[0]  # every mistake, in one message
        if s.name in self.reconfig.known:
            raise StreamExists(f"stream {s.name} is already running")
        if not s.is_live:  # a file is opened before it is written to the config: a wrong path says so now
            source = s.source if os.path.isabs(s.source) or not self.path else \
                os.path.join(os.path.dirname(os.path.abspath(self.path)), s.source)
            probe(source)
        if self.path:
            persist.add_stream(self.path, stream, self._check)
            self.reconfig.reload(self.path, f"{self.path} (stream {s.name} added through the API)")
        else:
            cfg = self.reconfig.base
            self.reconfig.apply(cfg.model_copy(update={"streams": self.reconfig.running() + [s]}), "the API")
        return s

    def _remove(self, name: str) -> None:
        if name not in self.reconfig.known:
            raise StreamNotFound(f"no stream named {name}")
        rest = [s for s in self.reconfig.running() if s.name != name]
        if not rest:
            raise StreamExists(f"stream {name} is the run's last: a run needs at least one stream")
        if self.path:
            persist.remove_stream(self.path, name, self._check)
            self.reconfig.reload(self.path, f"{self.path} (stream {name} removed through the API)")
        else:
            self.reconfig.apply(self.reconfig.base.model_copy(update={"streams": rest}), "the API")

    def _check(self, candidate: str) -> None:
        """The edited file, read as a whole before it replaces the config: its own mistakes
        are named as the config file's."""
        try:
            load_config(candidate)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(candidate, self.path or "")) from None
