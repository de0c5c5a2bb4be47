"""The sink's side of streams with zones (videoclf.config.zones): a physical stream's result
for zone k is written as its k-th logged stream; a physical stream's end ends each of them;
the classifier, which counts physical streams, is told per stream the lowest last frame of
its zones' logs (it replays from there; the sink drops what each log holds)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence

from videoclf.core.records import EndOfStream, Result


class ZoneMap:
    """``groups``: per physical stream, its logged streams' indices; empty: one each, the same."""

    def __init__(self, groups: Sequence[Sequence[int]]) -> None:
        self.groups: Optional[tuple[tuple[int, ...], ...]] = tuple(tuple(g) for g in groups) or None

    def logged(self, r: Result) -> Result:
        """``r`` as its logged stream's result (its frame's stream: the sink's index)."""
        if r.zone is None or self.groups is None:
            return r
        return replace(r, frame=replace(r.frame, stream=self.groups[r.frame.stream][r.zone]))

    def resume(self, last: Sequence[int]) -> tuple[int, ...]:
        """Per physical stream, the last frame every one of its logs holds."""
        if self.groups is None:
            return tuple(last)
        return tuple(min(last[j] for j in g) for g in self.groups)

    def ends(self, eos: EndOfStream) -> list[EndOfStream]:
        """A physical stream's end, as the end of each of its logged streams."""
        if self.groups is None or eos.stream >= len(self.groups):
            return [eos]
        return [replace(eos, stream=j) for j in self.groups[eos.stream]]

    def end(self, stage: Any, eos: EndOfStream) -> None:
        """``stage.end`` for each of the ended physical stream's logged streams."""
        for each in self.ends(eos):
            stage.end(each)
