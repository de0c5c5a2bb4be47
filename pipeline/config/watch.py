"""Follow a config file: ``ConfigWatcher.changed`` is set when the file is written, replaced
(editors and ``sed -i`` write a new file and rename it over the old one), or when ``trigger()``
is called (SIGHUP, the HTTP API). The owner's loop reloads on its own thread: the watcher only
says that it should. File events come from ``watchfiles`` (inotify on Linux), not from polling."""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

log = logging.getLogger("videoclf")


class ConfigWatcher:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.changed = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "ConfigWatcher":
        self._thread = threading.Thread(target=self._watch, name="config-watch", daemon=True)
        self._thread.start()
        return self

    def trigger(self) -> None:
        """Reload now (SIGHUP, or after the file was written here): safe in a signal handler."""
        self.changed.set()

    def take(self) -> bool:
        """True once per change (or trigger) since the last call."""
        if not self.changed.is_set():
            return False
        self.changed.clear()
        return True

    def _watch(self) -> None:
        from watchfiles import watch

        # the folder, not the file: a file replaced by rename is a new inode the old watch never sees
        folder, name = os.path.split(self.path)
        try:
            for changes in watch(folder, stop_event=self._stop, debounce=300, step=50, rust_timeout=1000,
                                 yield_on_timeout=False, recursive=False, raise_interrupt=False,
                                 watch_filter=lambda _change, p: os.path.basename(p) == name):
                if changes:
                    self.changed.set()
        except (OSError, RuntimeError) as exc:  # the folder went away, or inotify is out of watches
            log.warning("%s: no longer followed (%s); send SIGHUP to reload it", self.path, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
