"""What changed between the running config and a new one: the one comparison behind every
change a run takes without a restart (the config file edited, SIGHUP, the HTTP API; a local run
or a fleet's driver).

Streams are compared by name: a new name is added, a missing one removed, a same-named entry
with any other setting changed (its decoder restarts alone). Every other key (model, output,
supervision, …) is only read at start: a change there is named as needing a restart."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from videoclf.config.schema import Config, StreamConfig


@dataclass(frozen=True)
class Changes:
    added: tuple[StreamConfig, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[StreamConfig, ...] = ()
    restart_keys: tuple[str, ...] = ()  # top-level keys that differ: they take effect at the next start

    @property
    def streams(self) -> bool:
        """Any stream to add, remove or restart."""
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("adding", [s.name for s in self.added]), ("removing", list(self.removed)),
            ("restarting", [s.name for s in self.changed])) if names]
        return "; ".join(parts) or "no stream changed"


def diff(streams: Iterable[StreamConfig], before: Config, after: Config) -> Changes:
    """``streams``: the streams the run holds now (by name); ``before``: the config whose other
    keys the run was started with; ``after``: the new config."""
    now = {s.name: s for s in streams}
    new = {s.name: s for s in after.streams}
    added = tuple(s for n, s in new.items() if n not in now)
    removed = tuple(n for n in now if n not in new)
    changed = tuple(s for n, s in new.items() if n in now and s != now[n])
    # the defaults of classify, gate, decode, smooth and label_change live on in each stream (a changed default restarts its streams)
    per_stream = {"streams", "classify", "gate", "decode", "smooth", "label_change"}
    old_rest, new_rest = before.model_dump(exclude=per_stream), after.model_dump(exclude=per_stream)
    keys = tuple(k for k in new_rest if old_rest.get(k) != new_rest[k])
    return Changes(added, removed, changed, keys)
