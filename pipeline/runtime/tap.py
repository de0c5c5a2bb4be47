"""The sink's tap: each result, pixels aside, also goes to an inbox another process owns
(``videoclf.api``'s run). It is sent before the label line is written, so a sink killed between
the two sends it again after its restart (the line is not in the log) and the reader drops the
copy by its frame number: each frame reaches the tap once, none is lost. A tap whose reader is
gone costs nothing: ``Outbox.send`` returns False and the result is not retried."""
from __future__ import annotations

from typing import Optional

from videoclf.core.records import Result
from videoclf.ipc.transport import Outbox

# what travels: (stream index, frame number, pts s, wall time s, ((label, probability), ...),
# the smoothed (label, score) top-1 or None where the stream does not smooth its labels)
TapRecord = tuple[int, int, Optional[float], float, tuple[tuple[str, float], ...], Optional[tuple[str, float]]]


class Tap:
    def __init__(self, addr: str) -> None:
        self.box = Outbox(addr, "tap")
        self.sent = 0

    def send(self, r: Result) -> None:
        f = r.frame
        record: TapRecord = (f.stream, f.seq, f.pts, f.time, tuple(r.top), r.smoothed[0] if r.smoothed else None)
        if self.box.send(record):
            self.sent += 1

    def close(self) -> None:
        self.box.close()
