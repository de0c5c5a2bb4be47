"""Which frames a stream classifies, and how it decodes them: a classification rate,
keyframes only, a motion gate, the fast decode. Each is set for every stream at the top of
the config and per stream (a stream's keys win over the top's, key by key)."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassifyOptions(_Model):
    """How many of a stream's frames are classified (default: every frame)."""

    fps: Optional[float] = Field(None, gt=0, le=1000, description="classify at most this many frames a second, evenly "
                                 "spaced in stream time (the label log's frame numbers show which); the others are "
                                 "decoded but not classified (report.json skipped.rate); default: every frame")
    keyframes: bool = Field(False, description="decode and classify keyframes only (a camera with a 1 s GOP: one "
                            "frame a second, for the cost of one keyframe decode); the other frames are not even "
                            "decoded (report.json skipped.keyframes)")

    @property
    def every_frame(self) -> bool:
        return self.fps is None and not self.keyframes


class MotionGate(_Model):
    """Classify a frame only when the picture changed since the last classified frame."""

    threshold: float = Field(0.01, gt=0, le=1, description="share of the picture that must have changed (a grid of "
                             "16x16-pixel cells of the luma (two rows of each read), each changed when its mean moved by more than `delta`)")
    delta: float = Field(12.0, gt=0, le=255, description="how far a cell's mean luma (0-255) must move to count as "
                         "changed: above sensor noise and encoder flicker")
    heartbeat_s: float = Field(10.0, gt=0, le=86400, description="a still scene is still classified once this often")


class GateOptions(_Model):
    motion: Optional[MotionGate] = Field(None, description="a motion gate: frames of a still scene are not classified "
                                         "(report.json skipped.motion), at least one per heartbeat_s is")


class DecodeOptions(_Model):
    fast: Union[bool, Literal["auto"]] = Field(False, description="skip the H.264/HEVC loop filter: about 1.26x cheaper "
                                               "decode, small artefacts the model rarely notices; auto: on "
                                               "when `videoclf tune` measured the model's top-1 on your footage "
                                               "agreeing with the normal decode's at its bound (99 %), off until "
                                               "it has")


def merged(default: _Model, own: Optional[_Model]) -> _Model:
    """``own``'s keys over ``default``'s (a stream's options over the config's)."""
    if own is None:
        return default
    return default.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})
