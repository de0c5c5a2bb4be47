"""A source's two links: model frames to the classifier, display frames (and, for event clips,
the camera's packets) to the sink."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Optional

import numpy as np

from videoclf.core.contract import Policy
from videoclf.core.packets import ClipParams
from videoclf.core.records import Decoded, EndOfStream, FrameRecord, Hello
from videoclf.ipc.display import send_display
from videoclf.ipc.links import Producer
from videoclf.runtime.specs import Control, SourceSpec

LIVE_WAIT_S = 0.05  # a live source waits this long for a free slot before dropping a frame
PACKETS_EVERY_S = 0.1  # event clips: a camera's packets go to the sink in batches this far apart (fewer messages)


class Feed:
    """A source's two links (model frames to the classifier, display frames to the sink) and
    what it counts."""

    def __init__(self, spec: SourceSpec, ctrl: Control) -> None:
        self.spec, self.stop = spec, ctrl.stop
        self.lossless = spec.policy is Policy.LOSSLESS
        self.out = Producer(spec.out, Hello("source", spec.stream, spec.out.pool.spec), self.lossless, ctrl.stop)
        self.disp = None
        if spec.display is not None:
            port = spec.display.port
            self.disp = Producer(port, Hello("display", spec.stream, port.pool.spec), False, ctrl.stop)
        self.dropped = 0
        self.clip_params: Optional[ClipParams] = None  # event clips: the camera connection's, sent to each sink
        self.clip_epoch: Optional[int] = None  # the sink connection that has them
        self.clip_gap = False  # packets were lost on the way: the next batch says so
        self.clip_next = 0.0  # time.monotonic() of the next batch

    @property
    def all_dropped(self) -> int:
        return self.dropped + self.out.lost + (self.disp.lost if self.disp else 0)

    def hand_over(self, d: Decoded, rec: FrameRecord) -> Optional[bool]:
        """Frame ``rec.seq`` into a slot and to the classifier: True when sent, False when
        dropped (it keeps its number: a gap in the log), None when the run stopped first."""
        if self.disp is not None and d.display is not None:
            # the display frame goes first: the sink gets it before the Result it belongs to
            self.dropped += send_display(self.disp, self.spec.display, d.display, rec, self.lossless)
        # a camera waits briefly, else drops the frame (its reader's buffer keeps the freshest meanwhile)
        slot = self.out.acquire(self.lossless, LIVE_WAIT_S)
        if slot is None:
            if self.stop.is_set():
                return None
            self.dropped += 1
            return False
        np.copyto(self.out.pool.view(slot), d.array)
        if self.out.send(slot, FrameRecord(rec.stream, rec.seq, slot, rec.pts, rec.time, rec.t_decoded,
                                           rec.decode_ms)):
            return True
        if self.lossless:  # stopped while no classifier was there
            return None
        self.dropped += 1
        return False

    def packets(self, stage: Any) -> None:
        """Event clips: send the codec parameters and packets the stage demuxed since the last
        turn to the sink, on the display link (records only: compressed bytes, not pixels).
        Until the sink is connected they wait in the stage's bounded queue; a sink that is new
        (restarted) is told the connection's parameters again; packets a dead sink took with it
        are marked as lost, so the next sink's ring starts again at a keyframe."""
        take = getattr(stage, "take_packets", None)
        now = time.monotonic()
        if take is None or self.disp is None or now < self.clip_next:
            return
        self.clip_next = now + PACKETS_EVERY_S
        self.disp.poll()
        box = self.disp.box
        if not box.connected:
            return
        records = take(self.spec.stream)
        if box.epoch != self.clip_epoch and self.clip_params is not None and \
                not any(isinstance(r, ClipParams) for r in records):
            records.insert(0, self.clip_params)
        self.clip_epoch = box.epoch
        for r in records:
            if isinstance(r, ClipParams):
                self.clip_params = r
            elif self.clip_gap:
                r, self.clip_gap = replace(r, lost=max(r.lost, 1)), False
            if not box.send(r):
                self.clip_epoch, self.clip_gap = None, True
                return

    def close(self, eos: EndOfStream) -> None:
        if self.disp is not None:
            self.disp.box.close()
        self.out.finish(eos, wait=True)
