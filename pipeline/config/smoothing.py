"""Smoothed labels and label-change events: set for every stream at the top of the config and
per stream. A stream's ``label_change`` keys win over the top's key by key; a stream's
``smooth`` replaces the top's whole (a window and an EMA are alternatives, not keys to mix)."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from videoclf.config.outputs import ClipOptions


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmoothOptions(_Model):
    """How a stream's labels are smoothed over its classified frames (frames passed over by a
    rate, keyframes only or a motion gate are not in it): each label's score is averaged, a
    label missing from a frame's top-k counting as 0 there. Give exactly one of the two."""

    window: Optional[int] = Field(None, ge=1, le=10_000, description="mean score over the last N classified frames "
                                  "(1: the raw labels)")
    ema: Optional[float] = Field(None, gt=0, le=1, description="exponential moving average: each classified frame "
                                 "weighs ALPHA, the past 1-ALPHA (0.1: about the last 10 frames; 1: the raw labels)")

    @model_validator(mode="after")
    def _one_of(self) -> "SmoothOptions":
        if (self.window is None) == (self.ema is None):
            raise ValueError("give exactly one of window (N frames) or ema (ALPHA)")
        return self


class LabelChange(_Model):
    """A ``label_change`` event when a stream's smoothed top-1 becomes another label and holds
    for ``for_frames`` classified frames (a label flickering back and forth fires nothing). A
    stream's first label is where it starts, not a change: it fires no event."""

    for_frames: int = Field(5, ge=1, le=100_000, description="classified frames the new label must stay the smoothed "
                            "top-1 before the change fires (hysteresis)")
    min_score: float = Field(0.3, ge=0, le=1, description="lowest smoothed score of the new label; below it a frame "
                             "does not count towards a change")
    webhook: Optional[str] = Field(None, pattern=r"^https?://", description="URL that receives each label_change "
                                   "event as a JSON POST (as alert webhooks do)")
    webhook_timeout_s: float = Field(2.0, gt=0, le=60, description="per-attempt HTTP timeout of the webhook")
    webhook_retries: int = Field(2, ge=0, le=10, description="extra attempts after a failed webhook POST")
    clip: Optional[ClipOptions] = Field(None, description="save a clip of the camera's stream around each change, "
                                        "from pre_s before the new label's first frame (live streams; the event's "
                                        "`clip` names the file)")


def stream_smooth(top: Optional[SmoothOptions], own: Optional[SmoothOptions]) -> Optional[SmoothOptions]:
    """A stream's smoothing: its own, else the config's."""
    return own if own is not None else top


def stream_label_change(top: Optional[LabelChange], own: Optional[LabelChange]) -> Optional[LabelChange]:
    """A stream's label-change options: its keys over the config's."""
    if own is None or top is None:
        return own if own is not None else top
    return top.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})
