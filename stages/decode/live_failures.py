"""Why a live source's connection attempt failed, and how often to say so.

FFmpeg's errors are poor guides on their own: a server that accepts TCP and then stays silent
ends ``av.open`` with "Invalid data found when processing input" once the socket timeout
fires, and a wrong password is an HTTP-style 401. ``classify`` turns an exception (plus how
long the attempt took) into a short kind and one redacted line people can act on.
``ReasonLog`` keeps a camera that is off for hours to one log line per change of reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import av

from videoclf.config.schema import redact

AUTH = "auth"  # 401/403: retrying soon cannot help and may lock the camera's account
REFUSED = "refused"  # nothing listens at that port
TIMEOUT = "timeout"  # connected (or not) but no answer in time
WATCHDOG = "watchdog"  # connected, but no frame for watchdog_s
ENDED = "ended"  # the stream ended or broke while streaming
OTHER = "other"

# an attempt that failed after this share of its timeout failed *because* of the timeout
TIMEOUT_SHARE = 0.9


@dataclass(frozen=True)
class Failure:
    kind: str
    text: str  # one line, credentials redacted

    @property
    def key(self) -> str:
        """What counts as 'the same reason' for logging: the kind, or the text for unclassified errors."""
        return self.text if self.kind in (OTHER, ENDED) else self.kind


def _text(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def classify(exc: BaseException, elapsed_s: float = 0.0, timeout_s: Optional[float] = None) -> Failure:
    """The failure of one open attempt that took ``elapsed_s`` under a bound of ``timeout_s``."""
    text = redact(_text(exc))
    low = text.lower()
    if isinstance(exc, av.error.HTTPUnauthorizedError) or "returned 401" in low or "401 unauthorized" in low:
        return Failure(AUTH, "authentication failed (401): check the user/password")
    if isinstance(exc, av.error.HTTPForbiddenError) or "returned 403" in low or "403 forbidden" in low:
        return Failure(AUTH, "access denied (403): check the user's permissions on the camera")
    if isinstance(exc, ConnectionRefusedError) or "connection refused" in low:
        return Failure(REFUSED, "connection refused: nothing listens at that host/port")
    # FFmpeg reports a silent RTSP server as invalid data (or PyAV's interrupt as an exit)
    # once the socket timeout fires: the time taken tells the two apart from real garbage
    slow = timeout_s is not None and elapsed_s >= TIMEOUT_SHARE * timeout_s
    if isinstance(exc, TimeoutError) or "timed out" in low or (
            slow and isinstance(exc, (av.error.InvalidDataError, av.error.ExitError, OSError))):
        return Failure(TIMEOUT, f"timed out after {elapsed_s:.1f} s: the server did not answer ({text})")
    return Failure(OTHER, text)


class ReasonLog:
    """Remembers the last reason logged, so that only a *change* of reason is logged loudly."""

    def __init__(self) -> None:
        self.key: Optional[str] = None

    def changed(self, failure: Failure) -> bool:
        new = failure.key != self.key
        self.key = failure.key
        return new

    def reset(self) -> None:
        """Streaming again: the next failure is news whatever its reason."""
        self.key = None
