"""Event clips cut from a camera's own packets: stream copy, no decode, no encode.

The sink keeps a ``PacketRing`` per camera whose decoder sends packets (``videoclf.core.packets``).
``ClipRecorder.clip`` is "a clip for this event on this stream": it opens
``<output.dir>/clips/<stream>_<local time>_<label>.ts`` (``O_EXCL``: never replaces a file),
writes the ring from the last keyframe at or before ``pre_s`` before the event, and then every
packet that arrives until ``post_s`` after it. The clip keeps the camera's codec, resolution,
profile and quality. MPEG-TS: a clip cut short by a crash plays up to its last packet.

- An event on a stream whose clip is still recording extends that clip (its end moves to
  ``post_s`` after the new event, up to ``MAX_CLIP_S`` in all) and names the same file: one
  file per busy spell, no packet written twice. Past ``MAX_CLIP_S`` the next event opens a new clip.
- A clip still recording is finished with what it has when its stream ends, its camera
  reconnects (new codec parameters), packets were lost on the way, or the run stops. A camera
  clock that steps back (a looping server) does not end it: the ring continues its timestamps.
- An event before any packet of its stream reached the sink (the run's first frames, a sink
  that restarted) names its clip at once; the clip starts at the first keyframe that comes
  and lasts ``post_s`` from there (``clip_at_s`` is null: the event came before the clip). A
  reserved clip that never gets a packet is removed when its stream ends.
- Times inside the clip are the camera's pts less the pts of the clip's first packet
  (its dts where earlier), so ``clip_at_s`` (in the event) is where the event starts in the file.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import av

from videoclf.core.packets import ClipParams, Packet
from videoclf.stages.outputs.alerts import safe_name
from videoclf.stages.outputs.clipring import PacketRing
from videoclf.stages.outputs.video_out import create_new, stamp

log = logging.getLogger(__name__)

CLIPS_DIR = "clips"
MARGIN_S = 3.0  # the ring keeps this much beyond pre_s: an event reaches the sink a little after its frame
MAX_CLIP_S = 600.0  # an extended clip stops growing past this; the next event opens a new one
_START_CODES = (b"\x00\x00\x01", b"\x00\x00\x00\x01")


@dataclass
class _Recording:
    path: str
    container: Any
    out: Any  # its output stream
    params: ClipParams
    base: int  # time-base units subtracted from every timestamp (the first packet's)
    start_t: float  # camera time of the first packet
    end_t: float  # camera time at which the clip is complete
    packets: int = 0


class ClipRecorder:
    """Every camera's ring and recording clip, in the sink process."""

    def __init__(self, out_dir: str, names: Sequence[str], pre_s: float,
                 low: Callable[[], bool] = lambda: False) -> None:
        self.dir = os.path.join(out_dir, CLIPS_DIR)
        self.names = list(names)
        self.keep_s = pre_s + MARGIN_S
        self.low = low  # below output.min_free: no new clips
        self.rings: dict[int, PacketRing] = {}
        self.recording: dict[int, _Recording] = {}
        self.files = 0
        self.errors = 0
        self.skipped = 0  # events without a clip: the disk was low
        self.pending: dict[int, tuple[str, float]] = {}  # stream → (reserved path, post_s): waiting for packets

    def packets(self, msg: Any) -> None:
        """A decoder's ``ClipParams`` or ``Packets``."""
        ring = self.rings.setdefault(msg.stream, PacketRing(self.keep_s))
        if isinstance(msg, ClipParams):
            self._finish(msg.stream)  # a new connection: the clip so far is complete
            ring.reset(msg)
            return
        restarts = ring.restarts
        added = ring.add(msg)
        if msg.stream in self.pending and ring.items:
            self._start_pending(msg.stream, ring)
            return
        rec = self.recording.get(msg.stream)
        if rec is None:
            return
        if ring.restarts != restarts or msg.connection != rec.params.connection or self.low():
            self._finish(msg.stream)  # packets were lost (what follows would not decode), or the disk is low
            return
        for t, p in added:
            if not self._mux(msg.stream, rec, p):
                return
            if t >= rec.end_t:
                self._finish(msg.stream)
                return

    def clip(self, stream: int, t: float, pre_s: float, post_s: float, label: str) -> Optional[dict[str, Any]]:
        """The clip for an event starting at stream time ``t`` on stream ``stream``: the
        ``clip`` (path) and ``clip_at_s`` (the event's start in the clip's time) fields of the
        event, or None when the disk is low."""
        ring = self.rings.get(stream)
        if ring is None or ring.params is None or not ring.items:
            return self._reserve(stream, post_s, label)
        at = ring.camera_time(t)  # the event's time on the ring's (camera's) clock
        rec = self.recording.get(stream)
        if rec is not None and at + post_s - rec.start_t <= MAX_CLIP_S:
            rec.end_t = max(rec.end_t, at + post_s)
            return {"clip": rec.path, "clip_at_s": round(at - rec.start_t, 3)}
        self._finish(stream)
        packets = ring.since(at - pre_s)
        if not packets or self.low():
            self.skipped += 1
            return None
        rec = self._open(stream, ring.params, packets[0], at + post_s, label=label)
        if rec is None:
            return None
        for _, p in packets:
            if not self._mux(stream, rec, p):
                return None
        return {"clip": rec.path, "clip_at_s": round(at - rec.start_t, 3)}

    def _reserve(self, stream: int, post_s: float, label: str) -> Optional[dict[str, Any]]:
        """An event before its stream's packets reached the sink (the run's first frames, a sink
        that restarted): the clip's file is named now and starts at the first keyframe to come."""
        if stream in self.pending:
            return {"clip": self.pending[stream][0], "clip_at_s": None}
        path = None if self.low() else self._new_path(stream, label)
        if path is None:
            self.skipped += 1
            return None
        self.pending[stream] = (path, post_s)
        return {"clip": path, "clip_at_s": None}  # where the event lies in it is not known

    def _start_pending(self, stream: int, ring: PacketRing) -> None:
        path, post_s = self.pending.pop(stream)
        assert ring.params is not None
        rec = self._open(stream, ring.params, ring.items[0], ring.items[0][0] + post_s, path)
        for _, p in list(ring.items) if rec is not None else ():
            if not self._mux(stream, rec, p):
                return

    def _new_path(self, stream: int, label: str) -> Optional[str]:
        try:
            os.makedirs(self.dir, exist_ok=True)
            return create_new(self.dir, f"{self.names[stream]}_{stamp(time.time())}_{safe_name(label)}", ".ts")
        except OSError as exc:
            self.errors += 1
            log.warning("%s: cannot start a clip: %s", self.names[stream], exc)
            return None

    def _drop_pending(self, stream: int) -> None:
        """A reserved clip that never got a packet: its empty file goes (it is ours, made this run)."""
        path, _ = self.pending.pop(stream, (None, 0.0))
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass

    def _open(self, stream: int, params: ClipParams, first: tuple[float, Packet], end_t: float,
              path: Optional[str] = None, label: str = "") -> Optional[_Recording]:
        if params.codec in ("h264", "hevc") and params.extradata and not params.extradata.startswith(_START_CODES):
            # length-prefixed (MP4-style) packets need their parameter sets in the muxer, which a
            # stream without a codec context cannot be given; cameras (RTSP, V4L2) send Annex B
            self.errors += 1
            log.warning("%s: no clip: the stream's %s packets are not Annex B", self.names[stream], params.codec)
            if path is not None:
                self.pending[stream] = (path, 0.0)
                self._drop_pending(stream)
            return None
        _, p0 = first
        base = min(x for x in (p0.pts, p0.dts) if x is not None)
        path = path or self._new_path(stream, label)
        if path is None:
            return None
        try:
            container = av.open(path, "w", format="mpegts")
            out = container.add_mux_stream(params.codec, rate=params.rate, width=params.width, height=params.height)
            out.time_base = params.time_base
        except (OSError, ValueError, av.FFmpegError) as exc:
            self.errors += 1
            log.warning("%s: cannot start a clip: %s", self.names[stream], exc)
            return None
        self.files += 1
        start_t = float(base * params.time_base)
        rec = _Recording(path, container, out, params, base, start_t, end_t)
        self.recording[stream] = rec
        return rec

    def _mux(self, stream: int, rec: _Recording, p: Packet) -> bool:
        data = p.data
        extradata = rec.params.extradata
        if rec.packets == 0 and extradata and extradata.startswith(_START_CODES) and not data.startswith(extradata):
            data = extradata + data  # parameter sets the camera gave at setup only: the clip plays on its own
        packet = av.Packet(data)
        packet.pts = None if p.pts is None else p.pts - rec.base
        packet.dts = None if p.dts is None else p.dts - rec.base
        packet.is_keyframe = p.key
        packet.time_base = rec.params.time_base
        packet.stream = rec.out
        try:
            rec.container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            self.errors += 1
            log.warning("%s: writing clip %s failed (%s); the clip ends here", self.names[stream], rec.path, exc)
            self._finish(stream)
            return False
        rec.packets += 1
        return True

    def _finish(self, stream: int) -> None:
        rec = self.recording.pop(stream, None)
        if rec is None:
            return
        try:
            rec.container.close()
        except (OSError, av.FFmpegError) as exc:
            self.errors += 1
            log.warning("%s: finishing clip %s: %s", self.names[stream], rec.path, exc)

    def end(self, stream: int) -> None:
        """The stream ended: its clip is finished with what it has, its ring dropped."""
        self._finish(stream)
        self._drop_pending(stream)
        self.rings.pop(stream, None)

    def close(self) -> None:
        for stream in list(self.recording):
            self._finish(stream)
        for stream in list(self.pending):
            self._drop_pending(stream)

    def in_use(self) -> set[str]:
        """Clips being written: retention leaves them alone."""
        return {r.path for r in self.recording.values()}

    def add_stream(self, stream: int, name: str) -> None:
        self.names.extend([""] * (stream + 1 - len(self.names)))
        self.names[stream] = name
