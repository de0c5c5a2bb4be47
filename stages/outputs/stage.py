"""The outputs sink: label log + annotated video + alerts + live previews, in one process.

One process, because every output is driven by the same Result stream and the label log
costs microseconds per frame: a second process would only add another copy of every Result,
and writing the video frame and its label line in the same loop is what keeps them matched
when a run is interrupted. libx264 encodes on its own threads, so the heavy part is not
serialised behind the label log."""
from __future__ import annotations

import logging
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np

from videoclf.core.errors import ResourceError
from videoclf.core.sinkstats import ClipStats, LivePreview, SinkStats, VideoFiles, VideoPauses
from videoclf.core.records import DisplayGeom, EndOfStream, Event, Result
from videoclf.config.outputs import LIVE_DIR, AlertRule
from videoclf.core.contract import STAGES, StageBase
from videoclf.stages.outputs.alerts import AlertEngine, EventLog, safe_name
from videoclf.stages.outputs.clips import ClipRecorder
from videoclf.stages.outputs.overlay import RateMeter, draw_overlay, local_time, overlay_lines, yuv_to_bgr
from videoclf.stages.outputs.labels import SinkConfig  # also registers the label-log sinks this one wraps
from videoclf.stages.outputs.smoothing import LabelChanges
from videoclf.stages.outputs.video_out import SegmentWriter, create_new, stamp

log = logging.getLogger(__name__)

LIVE_EVERY_S = 0.5  # the web view refreshes about this often
LIVE_WIDTH = 640
VIDEO_RETRY_S = 10.0  # after a video write failed (a full disk), the next file is tried this much later


@dataclass(frozen=True)
class OutputsConfig:
    label_kind: str  # the label-log sink this one wraps: sink.jsonl | sink.csv | sink.null
    label: SinkConfig
    geoms: tuple[Optional[DisplayGeom], ...]  # per stream
    video: bool = False
    segment_s: tuple[Optional[float], ...] = ()  # per stream; None: one file
    alerts: tuple[AlertRule, ...] = ()
    live: bool = False  # write the web view's preview JPEGs
    mqtt_events: bool = False  # output.mqtt is set: each event goes to the supervisor, whose client publishes it
    # per stream: None for a file (stream time), the watchdog_s of a live stream (wall clock:
    # its alert cooldowns and runs, and the overlay's local date and time)
    live_gap_s: tuple[Optional[float], ...] = ()
    timezone: Optional[str] = None  # output.timezone of the overlay; None: the system's zone
    label_change: tuple[Any, ...] = ()  # per stream: its LabelChange options, None where it fires no label_change
    # per logged stream (a zone's: videoclf.config.zones), the camera whose packets its clips copy: (index,
    # name); empty: each stream its own
    clip_of: tuple[tuple[int, str], ...] = ()


@dataclass
class _Live:
    top: list[tuple[str, float]] = field(default_factory=list)
    seq: int = -1
    pts: Optional[float] = None
    fps: float = 0.0
    next_jpeg: float = 0.0


def _on_sigterm(_signum: int, _frame: Any) -> None:
    # the supervisor's last resort before SIGKILL: unwind so teardown() finalises the MP4s
    sys.exit(143)


def _replace(path: str, data: bytes) -> None:
    """Write a file atomically: the web server never reads half of it."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)


@STAGES.register("outputs.sink")
class OutputsSink(StageBase):
    def __init__(self, cfg: OutputsConfig) -> None:
        self.cfg = cfg
        self.names = cfg.label.streams
        self.label: Any = None
        self.writers: dict[int, SegmentWriter] = {}
        self.rates = [RateMeter() for _ in self.names]
        self.live = [_Live() for _ in self.names]
        self.events: Optional[EventLog] = None
        self.alerts: Optional[AlertEngine] = None
        self.changes: Optional[LabelChanges] = None
        self.without_frame = 0
        self.paused_frames = 0  # video frames not written while the disk was below output.min_free
        self.paused_snapshots = 0
        self.video_errors = 0
        self._video_retry: dict[int, float] = {}  # per stream: after a write error, no video before this
        self._done_files: dict[int, SegmentWriter] = {}  # closed writers, still reported
        self.tz = ZoneInfo(cfg.timezone) if cfg.timezone else None  # None: the system's local zone
        self.clips: Optional[ClipRecorder] = None  # event clips, when a rule asks for them

    def setup(self) -> None:
        signal.signal(signal.SIGTERM, _on_sigterm)
        self.label = STAGES.get(self.cfg.label_kind)(self.cfg.label)
        self.label.ctrl = self.ctrl
        self.label.setup()
        self.keeper = getattr(self.label, "keeper", None)
        pre = [r.clip.pre_s for r in self.cfg.alerts if r.clip is not None] + \
            [c.clip.pre_s for c in self.cfg.label_change if c is not None and c.clip is not None]
        if pre:
            cameras = dict(self.cfg.clip_of) if self.cfg.clip_of else dict(enumerate(self.names))
            self.clips = ClipRecorder(self.cfg.label.dir, [cameras[p] for p in sorted(cameras)], max(pre),
                                      self._disk_low)
        if self.keeper is not None:  # the video files and clips being written are not retention's to delete
            self.keeper.in_use = lambda: {w.files[-1] for w in self.writers.values() if w.container is not None} | \
                (self.clips.in_use() if self.clips is not None else set())
        out = self.cfg.label.dir
        try:
            if self.cfg.live:
                os.makedirs(os.path.join(out, LIVE_DIR), exist_ok=True)
            changes = any(c is not None for c in self.cfg.label_change)
            if self.cfg.alerts or changes:
                forward = self._forward if self.cfg.mqtt_events and self.ctrl is not None else None
                hooks = [*self.cfg.alerts, *(c for c in self.cfg.label_change if c is not None)]
                self.events = EventLog(out, any(r.webhook for r in hooks), forward)
            if self.cfg.alerts:
                os.makedirs(os.path.join(out, "snapshots"), exist_ok=True)
                live = {n: g for n, g in zip(self.names, self.cfg.live_gap_s) if g is not None}
                self.alerts = AlertEngine(self.cfg.alerts, self.events, live)
            if changes:
                self.changes = LabelChanges(self.cfg.label_change, self.events, self.clip_for)
        except OSError as exc:
            raise ResourceError(f"output.dir {out}: cannot write ({exc.strerror or exc})") from exc
        for i in range(len(self.cfg.geoms)):
            self._writer(i)

    def _writer(self, i: int) -> None:
        g = self.cfg.geoms[i]
        if self.cfg.video and g is not None:
            seg = self.cfg.segment_s[i] if self.cfg.segment_s else None
            live = i < len(self.cfg.live_gap_s) and self.cfg.live_gap_s[i] is not None
            self.writers[i] = SegmentWriter(self.cfg.label.dir, self.names[i], (g.width, g.height), g.fps, seg, live)

    def add_stream(self, stream: int, config: Any) -> None:
        """A stream added (or changed: its video goes on in a new file) while the run goes on;
        the other streams' outputs are not touched."""
        self.cfg, self.names = config, config.label.streams
        self.label.add_stream(stream, config.label)
        if self.clips is not None:
            self.clips.add_stream(stream, self.names[stream])
        self.rates.extend(RateMeter() for _ in range(stream + 1 - len(self.rates)))
        self.live.extend(_Live() for _ in range(stream + 1 - len(self.live)))
        gap = config.live_gap_s[stream] if stream < len(config.live_gap_s) else None
        if self.alerts is not None and gap is not None:
            self.alerts.live[self.names[stream]] = gap
        if self.changes is not None:
            self.changes.add_stream(stream, config.label_change[stream] if stream < len(config.label_change) else None)
        old = self.writers.pop(stream, None)
        if old is not None:
            old.close()
            self._done_files[stream] = old
        self._writer(stream)

    def prepare(self, result: Result) -> Result:
        return self.label.prepare(result)

    def write(self, result: Result, frame: Optional[np.ndarray] = None) -> None:
        self.label.write(result)  # first: the label line exists for every frame the video shows
        rec, i = result.frame, result.frame.stream
        now = time.monotonic()
        live = self.live[i]
        live.top, live.seq, live.pts = list(result.top), rec.seq, rec.pts
        live.fps = self.rates[i].tick(now)
        if frame is None and self.cfg.geoms[i] is not None:  # no geometry: no display frames (label_change alone)
            self.without_frame += 1
        if self.alerts is not None:
            t = rec.pts if rec.pts is not None else rec.time
            self.alerts.update(self.names[i], t, rec.time, result.top,
                               lambda label: self._snapshot(i, rec.seq, label, frame), result.smoothed, self._clip(i))
        if self.changes is not None:
            self.changes.update(self.names[i], result)
        if self.cfg.live and frame is not None and now >= live.next_jpeg:
            live.next_jpeg = now + LIVE_EVERY_S
            base = os.path.join(self.cfg.label.dir, LIVE_DIR, self.names[i])
            self._write_jpeg(base + ".jpg", yuv_to_bgr(frame, LIVE_WIDTH))
            # the labels of the pictured frame (the newest labels may belong to a later frame)
            _replace(base + ".json", json.dumps({"seq": rec.seq, "pts": rec.pts, "top": result.top}).encode())
        if self.events is not None and self.events.waiting:
            self.events.flush()
        w = self.writers.get(i)
        if w is not None and frame is not None:
            self._video(i, w, frame, result)

    def _video(self, i: int, w: SegmentWriter, frame: np.ndarray, result: Result) -> None:
        """One annotated frame; below the free-space floor the stream's file is finished and
        frames are counted, not written, until space is back."""
        if self._disk_low() or time.monotonic() < self._video_retry.get(i, 0.0):
            if w.container is not None:
                w.close()
            self.paused_frames += 1
            return
        g = self.cfg.geoms[i]
        assert g is not None
        rec = result.frame
        # the slot is ours until the loop releases it: draw in place, no copy
        draw_overlay(frame, g.height, self.overlay_text(result, self.live[i].fps))
        files = len(w.files)
        try:
            w.write(frame, rec.pts, rec.time)
        except (OSError, av.FFmpegError) as exc:  # a full disk mid-file: the file is kept up to its last fragment
            self.video_errors += 1
            self._video_retry[i] = time.monotonic() + VIDEO_RETRY_S
            log.warning("%s: writing %s failed (%s); video goes on in a new file in %.0f s", self.names[i],
                        w.files[-1] if w.files else "video", exc, VIDEO_RETRY_S)
            w.close()
            return
        if len(w.files) > files > 0 and self.keeper is not None:  # a file was finished: apply video retention
            self.keeper.sweep(("video",))

    def packets(self, msg: Any) -> None:
        """A camera's codec parameters or packets (``videoclf.core.packets``), for event clips."""
        if self.clips is not None:
            self.clips.packets(msg)

    def clip_for(self, i: int, start: float, pre_s: float, post_s: float, label: str) -> dict[str, Any]:
        """The clip for an event of any kind on stream ``i`` starting at stream time ``start``:
        the event's ``clip`` (path, or None: no clips configured, a file, a low disk) and
        ``clip_at_s`` fields (``stages/outputs/clips.py``)."""
        live = i < len(self.cfg.live_gap_s) and self.cfg.live_gap_s[i] is not None
        if self.clips is None or not live:  # only cameras send their packets
            return {"clip": None}
        camera = self.cfg.clip_of[i][0] if i < len(self.cfg.clip_of) else i  # a zone's clips are its camera's
        return self.clips.clip(camera, start, pre_s, post_s, label) or {"clip": None}

    def _clip(self, i: int) -> Any:
        """Stream ``i``'s event clips for the alert engine: (rule, start, label) → the event's clip fields."""
        return lambda rule, start, label: self.clip_for(i, start, rule.clip.pre_s, rule.clip.post_s, label)

    def _disk_low(self) -> bool:
        return self.keeper is not None and self.keeper.low

    def overlay_text(self, result: Result, fps: float) -> list[str]:
        """The lines drawn on a frame: a live stream's show the local date and time, like CCTV."""
        rec = result.frame
        live = rec.stream < len(self.cfg.live_gap_s) and self.cfg.live_gap_s[rec.stream] is not None
        local = local_time(rec.time, self.tz) if live else None
        return overlay_lines(self.names[rec.stream], rec.pts, fps, result.top, local)

    def _forward(self, stream: str, line: str) -> None:
        """An event's line to the supervisor's MQTT client: one send on the status channel,
        which the supervisor reads into memory at once (a slow broker never reaches here)."""
        self.ctrl.events.put(Event("alert", "sink", {"stream": stream, "line": line}))

    def _snapshot(self, i: int, seq: int, label: str, frame: Optional[np.ndarray]) -> Optional[str]:
        if frame is None:
            return None
        if self._disk_low():
            self.paused_snapshots += 1
            return None
        ok, buf = cv2.imencode(".jpg", yuv_to_bgr(frame), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return None
        stem = f"{self.names[i]}_{stamp(time.time())}_{seq}_{safe_name(label)}"
        try:
            path = create_new(os.path.join(self.cfg.label.dir, "snapshots"), stem, ".jpg")
            with open(path, "wb") as f:
                f.write(buf.tobytes())
        except OSError as exc:
            log.warning("%s: cannot write a snapshot: %s", self.names[i], exc)
            return None
        return path

    @staticmethod
    def _write_jpeg(path: str, bgr: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            _replace(path, buf.tobytes())

    def end(self, eos: EndOfStream) -> None:
        self.label.end(eos)
        w = self.writers.pop(eos.stream, None)
        if w is not None:
            w.close()
            self._done_files[eos.stream] = w
        if self.alerts is not None:
            self.alerts.end(self.names[eos.stream])
        if self.clips is not None:
            self.clips.end(eos.stream)
        self.live[eos.stream].fps = 0.0

    def stats(self) -> SinkStats:
        base = (self.label.stats() if self.label else None) or SinkStats()
        ws = {**self._done_files, **self.writers} if self.cfg.video else {}
        streams = tuple(replace(base.stream(i, n), live=LivePreview(top=tuple(l.top), seq=l.seq, pts=l.pts,
                                                                    fps=round(l.fps, 2)),
                                video=VideoFiles(files=tuple(ws[i].files), frames=ws[i].frames) if i in ws else None)
                        for i, (n, l) in enumerate(zip(self.names, self.live)))
        return replace(base, streams=streams, alerts=self._event_stats(),
                       frames_without_display=self.without_frame,
                       paused=VideoPauses(video_frames=self.paused_frames, snapshots=self.paused_snapshots,
                                          video_errors=self.video_errors))

    def _event_stats(self) -> Any:
        """report.json's ``alerts``: events.jsonl's lines, of them the label changes, and the clips."""
        if self.events is None:
            return None
        c = self.clips
        clips = ClipStats(files=c.files, errors=c.errors, skipped_low_disk=c.skipped) if c is not None else None
        return replace(self.events.stats(), label_changes=self.changes.fired if self.changes is not None else 0,
                       clips=clips)

    def teardown(self) -> None:
        # finalise every container first: an interrupted run must leave playable files
        for w in self.writers.values():
            w.close()
        if self.alerts is not None:
            self.alerts.end_all()
        if self.clips is not None:
            self.clips.close()  # a clip still recording keeps what it has
        if self.events is not None:
            self.events.close()
        if self.label is not None:
            self.label.teardown()
