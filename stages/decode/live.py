"""Live decode stage: RTSP / HTTP streams and capture devices that drop, freeze and come back.

A reader thread owns the PyAV container and does every blocking network call, each bounded
by FFmpeg's ``timeout`` (µs) and PyAV's interrupt timeouts. ``frames()`` only waits on the
thread's hand-over buffer in short steps and yields ``None`` heartbeats meanwhile, so the
stage loop always sees the stop/drain events. A connection that ends (a killed server ends
PyAV's decode iterator silently), fails, or delivers no frame for ``watchdog_s`` is dropped
and reopened with exponential back-off; a stalled reader thread is abandoned, never joined
without bound, and closes its own container when its read times out. Frames are only ever
real decoded frames: nothing is synthesised while a camera is down. Stream time (pts) is
made monotonic across reconnects by ``StreamTime``.
"""
from __future__ import annotations

import collections
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import av
import numpy as np

from videoclf.config.schema import LiveOptions, Roi, StreamConfig, redact
from videoclf.core.records import DisplayGeom
from videoclf.core.records import Decoded
from videoclf.core.contract import STAGES, StageBase
from videoclf.core.stats import DecoderStats, LiveStats
from videoclf.stages.decode.select import FrameFilter
from videoclf.stages.decode.streamtime import StreamTime
from videoclf.stages.decode.file import DecodeConfig, DisplayTap, to_model_rgb
from videoclf.stages.decode.keyframes import keyframes, set_fast
from videoclf.stages.decode.packettap import PacketTap
from videoclf.stages.decode.live_failures import AUTH, ENDED, OTHER, WATCHDOG, Failure, ReasonLog, classify

log = logging.getLogger(__name__)

WAIT_S = 0.1  # longest wait inside frames() before a heartbeat
BUFFER = 4  # frames held between the reader thread and the loop; the ring does the real dropping


@dataclass(frozen=True)
class LiveConfig:
    name: str
    source: str
    resize: int
    crop: int
    roi: Optional[Roi]
    threads: int
    live: LiveOptions
    display: Optional[DisplayGeom] = None
    classify: Any = None  # the stream's ClassifyOptions (rate, keyframes only); None: every frame
    gate: Any = None  # the stream's GateOptions (motion gate)
    fast: bool = False  # skip the loop filter (decode.fast, resolved by the plan)
    clips: bool = False  # send every demuxed packet to the sink (event clips by stream copy)
    zones: tuple = ()  # the stream's Zones: one model input each

    @property
    def geometry(self) -> DecodeConfig:
        return DecodeConfig(self.name, self.source, self.resize, self.crop, self.roi, self.threads, zones=self.zones)


def live_config(s: StreamConfig, resize: int, crop: int, display: Optional[DisplayGeom] = None,
                threads: int = 0, fast: bool = False, clips: bool = False) -> LiveConfig:
    """``threads``: the plan's FFmpeg threads for this camera (0: the config's); ``fast``: the plan's
    verdict on ``decode.fast``; ``clips``: an alert records clips (packets go to the sink)."""
    return LiveConfig(s.name, s.source, resize, crop, s.roi, threads or s.decode_threads, s.live, display,
                      classify=s.classify, gate=s.gate, fast=fast, clips=clips, zones=s.zones)


def open_options(source: str, opts: LiveOptions, transport: Optional[str] = None) -> tuple[dict[str, str], Optional[str]]:
    """FFmpeg options and input format for a live source (``transport``: the RTSP transport to
    try, for ``live.transport: auto``)."""
    if source.startswith("/dev/video"):
        return {}, "v4l2"
    # `timeout` is in microseconds and bounds every socket read/connect (`stimeout` is ignored
    # by FFmpeg >= 5); a small probe gets the first frame in ~0.1 s instead of ~1 s
    options = {"timeout": str(int(opts.read_timeout_s * 1e6)), "analyzeduration": "100000", "probesize": "32"}
    if source.startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = transport or ("tcp" if opts.transport == "auto" else opts.transport)
    return options, None


_STATUS_461 = re.compile(r"(?<![\d:])461(?!\d)")  # the status code, not a port such as :46189 in the URL


def refused_transport(exc: BaseException) -> bool:
    """The RTSP server answered 461 Unsupported transport (FFmpeg: 'Protocol not supported')."""
    text = str(exc)
    return getattr(exc, "errno", None) == 93 or "protocol not supported" in text.lower() or bool(_STATUS_461.search(text))


class Transport:
    """The RTSP transport of a stream, kept across reconnects: with ``auto``, TCP until the
    server refuses it, then UDP for good (logged once)."""

    def __init__(self, configured: str, name: str) -> None:
        self.configured, self.name = configured, name
        self.current = "tcp" if configured == "auto" else configured

    def fall_back(self) -> bool:
        if self.configured != "auto" or self.current != "tcp":
            return False
        self.current = "udp"
        log.info("%s: the server refuses RTP over TCP (461 Unsupported transport): using UDP", self.name)
        return True


class _Reader(threading.Thread):
    """One connection attempt: open, decode until the stream ends or fails, close."""

    def __init__(self, cfg: LiveConfig, out: "_Handover", attempt: int, transport: Optional[Transport] = None,
                 tap: Optional[PacketTap] = None) -> None:
        super().__init__(name=f"live-{cfg.name}-{attempt}", daemon=True)
        self.cfg, self.out, self.attempt, self.tap = cfg, out, attempt, tap
        self.transport = transport or Transport(cfg.live.transport, cfg.name)
        self.abandoned = threading.Event()  # set when the loop gave up on this connection

    def run(self) -> None:
        o = self.cfg.live
        t0 = time.monotonic()
        while True:
            options, fmt = open_options(self.cfg.source, o, self.transport.current)
            try:
                container = av.open(self.cfg.source, mode="r", format=fmt, options=options,
                                    timeout=(o.open_timeout_s, o.read_timeout_s))
                break
            except Exception as exc:  # any failure to open is a failed attempt, retried by the loop
                rtsp = self.cfg.source.startswith(("rtsp://", "rtsps://"))
                if rtsp and refused_transport(exc) and self.transport.fall_back():
                    continue  # auto: the same attempt again over UDP
                bound = min(o.open_timeout_s, o.read_timeout_s)  # either one ends a silent server's open
                failure = classify(exc, time.monotonic() - t0, bound)
                if rtsp and refused_transport(exc):
                    other = "udp" if self.transport.current == "tcp" else "tcp"
                    failure = Failure(OTHER, f"the server refuses RTSP over {self.transport.current} (461 Unsupported "
                                             f"transport): try live.transport: {other} (or auto)")
                self.out.put(self, ("failed", failure))
                return
        try:
            if not container.streams.video:
                self.out.put(self, ("failed", Failure(OTHER, "no video stream")))
                return
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.cfg.threads:
                stream.codec_context.thread_count = self.cfg.threads
            set_fast(stream.codec_context, self.cfg.fast)
            geometry = self.cfg.geometry
            tap = DisplayTap(self.cfg.display)
            rate = float(stream.average_rate) if stream.average_rate else None
            filt = FrameFilter(self.cfg.classify, self.cfg.gate, rate)
            skip = lambda exc: log.debug("%s: undecodable keyframe skipped (%s)", self.cfg.name, exc)  # noqa: E731
            packets = container.demux(stream)
            if self.tap is not None:  # event clips: every packet is also kept for the sink (stream copy)
                packets = self.tap.wrap(packets, stream)
            frames = keyframes(packets, stream, filt, skip) if filt.keyframes else \
                (f for p in packets for f in p.decode())  # what container.decode(stream) does
            for frame in frames:
                if self.abandoned.is_set():
                    return
                self.out.seen(self)  # the watchdog hears of every frame, a still scene's gated ones too
                if filt.active and not filt.keep(frame):  # a frame passed over costs its decode only
                    continue
                t0 = time.monotonic()
                array = to_model_rgb(frame, geometry)
                t1 = time.monotonic()
                info = (frame.width, frame.height, stream.codec_context.name)
                skipped, gated, undecoded = filt.take()
                self.out.put(self, ("frame", (Decoded(array, frame.time, tap.take(frame), t0, (t1 - t0) * 1000,
                                                      skipped, gated, undecoded), info)))
            self.out.put(self, ("ended", Failure(ENDED, "the stream ended")))
        except Exception as exc:  # timeouts, resets, corrupt data: all end this connection
            self.out.put(self, ("ended", _ended(exc)))
        finally:
            container.close()


def _ended(exc: BaseException) -> Failure:
    failure = classify(exc)
    return failure if failure.kind != OTHER else Failure(ENDED, failure.text)


class _Handover:
    """Bounded drop-oldest buffer from the current reader to the loop; stale readers are ignored."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: collections.deque[tuple[str, Any]] = collections.deque()
        self.current: Optional[_Reader] = None
        self.dropped = 0
        self.seen_at = 0.0  # time.monotonic() of the current reader's newest frame, handed over or passed over

    def put(self, reader: _Reader, item: tuple[str, Any]) -> None:
        with self.cond:
            if reader is not self.current:
                return
            if item[0] == "frame" and sum(1 for k, _ in self.items if k == "frame") >= BUFFER:
                for i, (k, _) in enumerate(self.items):
                    if k == "frame":  # drop the oldest frame: the freshest frames win
                        del self.items[i]
                        self.dropped += 1
                        break
            self.items.append(item)
            self.cond.notify()

    def seen(self, reader: _Reader) -> None:
        """The reader decoded a frame (kept or passed over by rate or gate): the camera is alive."""
        if reader is self.current:
            self.seen_at = time.monotonic()

    def get(self, timeout: float) -> Optional[tuple[str, Any]]:
        with self.cond:
            if not self.items:
                self.cond.wait(timeout)
            return self.items.popleft() if self.items else None

    def switch(self, reader: Optional[_Reader]) -> None:
        with self.cond:
            if self.current is not None:
                self.current.abandoned.set()
            self.current = reader
            self.items.clear()


@STAGES.register("decode.live")
class LiveDecoder(StageBase):
    """Reconnecting live source with a no-frame watchdog; counts losses, downtime and input FPS."""

    def __init__(self, cfg: LiveConfig) -> None:
        self.cfg = cfg
        self.shown = redact(cfg.source)
        self.handover = _Handover()
        self.attempts = 0  # connection attempts so far
        self.auth_failures = 0  # attempts the camera refused for the user/password
        self.reasons = ReasonLog()
        self.failures = 0  # failed attempts in a row (since the last frame)
        self.disconnects = 0
        self.reconnects = 0  # losses followed by frames again
        self.downtime_s = 0.0  # finished outages
        self.down_since: Optional[float] = time.monotonic()  # not streaming yet
        self.had_frames = False
        self.frames_in = 0
        self.first_frame: Optional[float] = None
        self.last_frame: Optional[float] = None
        self.last_error = ""
        self.info: dict[str, Any] = {}
        self.gave_up = False
        self.connect_started = time.monotonic()
        self.transport = Transport(cfg.live.transport, cfg.name)
        self.clock = StreamTime()
        self.tap = PacketTap() if cfg.clips else None

    def take_packets(self, stream: int) -> list[Any]:
        """Event clips: the codec parameters and packets demuxed since the last call (none without clips)."""
        return self.tap.take(stream, self.clock.offset) if self.tap is not None else []

    # -- connection management ----------------------------------------------------
    def _connect(self) -> None:
        self.attempts += 1
        reader = _Reader(self.cfg, self.handover, self.attempts, self.transport, self.tap)
        self.handover.switch(reader)  # from here on only this reader's frames arrive
        self.clock.reconnected()
        self.connect_started = time.monotonic()
        reader.start()

    def _lost(self, why: Failure, now: float) -> float:
        """Drop the connection; return when to try again."""
        self.handover.switch(None)
        self.last_error = why.text
        o = self.cfg.live
        # a wrong password stays wrong: retrying at the short initial back-off only hammers the
        # camera (and may lock the account), so an auth failure waits the longest back-off at once
        delay = o.backoff_max_s if why.kind == AUTH else min(o.backoff_s * 2 ** max(self.failures, 0), o.backoff_max_s)
        if self.down_since is None:  # was streaming: this is a loss
            self.down_since = now
            self.disconnects += 1
            self.reasons.changed(why)
            log.warning("%s: connection lost (%s); reconnecting", self.cfg.name, why.text)
            return now + delay
        self.failures += 1
        self.auth_failures += why.kind == AUTH
        # once per change of reason, not per attempt: a camera that is off for hours logs one line
        loud = self.reasons.changed(why)
        log.log(logging.WARNING if loud else logging.DEBUG, "%s: cannot connect to %s (%s); attempt %d failed, "
                "retrying in %.1f s%s", self.cfg.name, self.shown, why.text, self.failures, delay,
                " (said once until the reason changes)" if loud else "")
        return now + delay

    def _got_frame(self, now: float, info: tuple[int, int, str], passed: int = 0) -> None:
        """``passed``: the camera's frames the reader passed over before this one (rate, gate, keyframes)."""
        if self.down_since is not None:
            outage = now - self.down_since
            if self.had_frames:
                self.reconnects += 1
                self.downtime_s += outage
                log.warning("%s: reconnected after %.1f s down (%d reconnects so far)", self.cfg.name, outage, self.reconnects)
            else:
                log.info("%s: streaming from %s (%dx%d %s)", self.cfg.name, self.shown, *info)
                if self.failures:  # unreachable at start: that outage counts too
                    self.downtime_s += outage
            self.info = {"codec": info[2], "width": info[0], "height": info[1], "fps": None, "fast_decode": self.cfg.fast}
            self.down_since = None
            self.failures = 0
            self.had_frames = True
            self.reasons.reset()
        self.frames_in += 1 + passed  # the camera's rate counts every frame it sent
        self.first_frame = self.first_frame or now
        self.last_frame = now

    # -- the Source protocol ------------------------------------------------------
    def frames(self) -> Iterator[Optional[tuple[np.ndarray, Optional[float], float, float]]]:
        o = self.cfg.live
        retry_at: Optional[float] = 0.0
        try:
            while True:
                now = time.monotonic()
                if retry_at is not None and now >= retry_at:
                    if o.max_reconnects is not None and self.failures > o.max_reconnects:
                        self.gave_up = True
                        log.error("%s: giving up on %s after %d failed attempts in a row (live.max_reconnects=%d): %s",
                                  self.cfg.name, self.shown, self.failures, o.max_reconnects, self.last_error)
                        return
                    retry_at = None
                    self._connect()
                item = self.handover.get(WAIT_S) if retry_at is None else None
                now = time.monotonic()
                if item is None:
                    if retry_at is None and self.handover.current is not None:
                        since = max(self.last_frame or 0.0, self.handover.seen_at) if self.down_since is None \
                            else self.connect_started
                        if since is not None and now - since > o.watchdog_s:
                            retry_at = self._lost(Failure(WATCHDOG, f"no frame for {o.watchdog_s:g} s (watchdog)"), now)
                    elif retry_at is not None:
                        time.sleep(min(WAIT_S, max(retry_at - now, 0)))
                    yield None
                    continue
                kind, data = item
                if kind == "frame":
                    decoded, info = data
                    self._got_frame(now, info, decoded.skipped + decoded.gated)
                    yield decoded._replace(pts=self.clock(decoded.pts, decoded.t_decoded or now))
                else:  # "failed" to open, or "ended": for a live source both mean reconnect
                    retry_at = self._lost(data, now)
                    yield None
        finally:
            self.handover.switch(None)  # the reader closes its own container and exits

    @property
    def state(self) -> str:
        """connecting | live | reconnecting | gave_up (the web view shows it)."""
        if self.gave_up:
            return "gave_up"
        if self.down_since is None:
            return "live"
        return "reconnecting" if self.had_frames else "connecting"

    def stats(self) -> DecoderStats:
        now = time.monotonic()
        span = (self.last_frame - self.first_frame) if self.first_frame and self.last_frame else 0.0
        ongoing = now - self.down_since if self.down_since is not None and (self.had_frames or self.failures) else 0.0
        # every frame the camera delivered: taken by the loop, or dropped (oldest) while it was busy
        arrived = self.frames_in + self.handover.dropped
        rtsp = self.cfg.source.startswith(("rtsp://", "rtsps://"))
        live = LiveStats(input_frames=arrived, input_fps=round((arrived - 1) / span, 2) if span > 0 else 0.0,
                         reconnects=self.reconnects, disconnects=self.disconnects,
                         downtime_s=round(self.downtime_s + ongoing, 3), connected=self.down_since is None,
                         connect_attempts=self.attempts, auth_failures=self.auth_failures,
                         buffer_dropped=self.handover.dropped, gave_up=self.gave_up, state=self.state,
                         transport=self.transport.current if rtsp else None)
        return DecoderStats(name=self.cfg.name, source=dict(self.info), last_error=self.last_error, live=live)

    def teardown(self) -> None:
        reader = self.handover.current
        self.handover.switch(None)
        if reader is not None:
            # bounded and short: a decoding reader sees `abandoned` within a frame; one blocked in
            # av.open or a read only exits on its own timeout, and waiting for it would delay Ctrl-C
            reader.join(0.2)
