"""A live stream's time, monotonic across reconnects (``StreamTime``)."""
from __future__ import annotations

from typing import Optional

MIN_STEP_S = 0.001  # a re-anchored frame is at least this much after the one before it


class StreamTime:
    """A live stream's time: the camera's pts, continued across reconnects.

    Within one connection a frame keeps the camera's own spacing (its pts plus the
    connection's offset). A camera's pts usually start again near 0 when it reconnects, so
    the first frame of each new connection is placed after the previous connection's last
    frame by the time that passed between the two (the outage, on the monotonic clock): stream
    time never goes backwards, and an outage shows as a gap as long as the outage. A pts that
    goes backwards within a connection (a camera that restarts its clock without dropping the
    connection) is re-anchored the same way. A frame without a pts (FFmpeg gives none to the
    first frame of many RTSP connections) is placed by the time elapsed since the frame before
    it; the connection's next timestamped frame anchors it. The first connection keeps the
    camera's pts."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.last: Optional[float] = None  # stream time of the last frame
        self.last_at = 0.0  # its time.monotonic() at decode
        self.new_connection = False

    def reconnected(self) -> None:
        """The next frame comes from a new connection."""
        self.new_connection = True

    def __call__(self, pts: Optional[float], at: float) -> float:
        """Stream time of a frame with camera ``pts`` decoded at monotonic time ``at``."""
        if pts is None:
            t = 0.0 if self.last is None else self.last + max(at - self.last_at, MIN_STEP_S)
        else:
            if self.last is not None and (self.new_connection or pts + self.offset < self.last):
                self.offset = self.last + max(at - self.last_at, MIN_STEP_S) - pts
            self.new_connection = False
            t = pts + self.offset
        self.last, self.last_at = t, at
        return t
