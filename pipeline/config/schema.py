"""The configuration's validated pydantic models (read by ``videoclf.config.load``).

Every field has a description (it is the config reference), unknown keys are refused, and
derived sizes live here as properties so stages never recompute them differently.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from videoclf.config.errors import redact  # noqa: F401 (re-exported: the stages, report and supervisor import it from here)
from videoclf.config.outputs import AlertRule, MqttConfig, Retention, WebConfig, check_address, parse_size
from videoclf.config.sampling import ClassifyOptions, DecodeOptions, GateOptions, merged
from videoclf.config.smoothing import LabelChange, SmoothOptions, stream_label_change, stream_smooth

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Roi(_Model):
    """Region of interest in source pixels; only this zone is classified."""

    x: int = Field(ge=0, description="left edge in pixels")
    y: int = Field(ge=0, description="top edge in pixels")
    w: int = Field(gt=0, description="width in pixels")
    h: int = Field(gt=0, description="height in pixels")
    fit: Literal["pad", "crop", "stretch"] = Field(
        "pad", description="how the zone becomes the model's square input: pad (the whole zone, its longer side "
                           "scaled to the input size, the rest filled with the ImageNet mean colour), crop (the "
                           "backbone's resize and centre crop applied to the zone: its centre square only) or "
                           "stretch (the whole zone, each side scaled: its aspect changes)")


class Zone(Roi):
    """A named region of a stream, classified as a stream of its own, ``<stream>.<zone>``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="the zone's name, unique in its stream; its "
                      "label log is <stream>.<zone>.jsonl and its results, alerts and stats read <stream>.<zone>")


class LiveOptions(_Model):
    """Network behaviour of a live source (rtsp://, http(s)://, /dev/videoN); files ignore it."""

    transport: Literal["auto", "tcp", "udp"] = Field(
        "auto", description="RTSP transport: auto (TCP, no packet loss; UDP when the server refuses RTP over TCP, "
                            "as VLC does with 461), tcp or udp")
    open_timeout_s: float = Field(5.0, gt=0, le=300, description="an attempt to open the source fails after this long")
    read_timeout_s: float = Field(5.0, gt=0, le=300, description="a network read that waits longer than this fails")
    watchdog_s: float = Field(10.0, gt=0, le=3600, description="reconnect when no frame arrived for this long")
    backoff_s: float = Field(0.5, gt=0, le=60, description="first wait before reconnecting; doubles after each failure")
    backoff_max_s: float = Field(10.0, gt=0, le=3600, description="longest wait between reconnect attempts")
    max_queue_s: float = Field(
        0.3, ge=0, le=60, description="a frame waits at most this long for the classifier; older ones are dropped "
                                      "unclassified (report.json dropped_by.stale), so labels stay fresh when "
                                      "inference falls behind, and a short stall costs no frames")
    max_reconnects: Optional[int] = Field(
        None, ge=0, description="failed attempts in a row before the stream is given up (default: retry forever)")


class PlaceConfig(_Model):
    """Where a stream may run in a fleet (``videoclf run --ray``)."""

    resources: dict[str, float] = Field(default_factory=dict, description="Ray node resources the stream needs, "
                                        "e.g. {site_a: 1}: only nodes started with them take it")
    num_gpus: float = Field(0, ge=0, description="GPUs the stream's node must have (a GPU node is placed by num_gpus)")


class StreamConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                      description="unique stream name; used for file names and metrics labels")
    source: str = Field(min_length=1, description="video file path, rtsp://, http(s):// URL or /dev/videoN")
    roi: Optional[Roi] = Field(None, description="classify only this region {x, y, w, h, fit} of each frame")
    zones: tuple[Zone, ...] = Field((), max_length=16, description="named regions [{name, x, y, w, h, fit}], each "
                                    "classified as a stream of its own (<stream>.<zone>) from the one decode; "
                                    "not with roi")
    policy: Optional[Literal["lossless", "drop_oldest"]] = Field(
        None, description="back-pressure: lossless (files, default) or drop_oldest (live, default)")
    ring_slots: int = Field(8, ge=2, le=256, description="shared-memory frame slots between decode and classify (at least two full batches)")
    decode_threads: int = Field(0, ge=0, le=64, description="decode threads (0 = the cores shared out between streams, at least 1 each); a file of closed GOPs is decoded a GOP per thread, others on FFmpeg's frame threads (report.json input.threads_by)")
    live: LiveOptions = Field(default_factory=LiveOptions,
                              description="timeouts, watchdog and reconnect back-off of a live source")
    loop: bool = Field(False, description="files only: start again at the end, forever (soak tests, demos)")
    start_frame: int = Field(0, ge=0, description="lowest frame number to log: a file skips the frames before it, a "
                                                  "camera numbers its frames from it; a run goes on after the last "
                                                  "frame its log holds when that is higher")
    place: PlaceConfig = Field(default_factory=PlaceConfig, description="fleet placement: node resources it needs")
    classify: Optional[ClassifyOptions] = Field(None, description="this stream's classification rate or keyframes "
                                                "only (its keys over the config's classify)")
    gate: Optional[GateOptions] = Field(None, description="this stream's motion gate (over the config's gate)")
    decode: Optional[DecodeOptions] = Field(None, description="this stream's fast decode (over the config's decode)")
    smooth: Optional[SmoothOptions] = Field(None, description="this stream's label smoothing (replaces the config's "
                                            "smooth)")
    label_change: Optional[LabelChange] = Field(None, description="this stream's label-change events (its keys over "
                                                "the config's label_change)")

    @model_validator(mode="after")
    def _zones(self) -> "StreamConfig":
        if self.zones and self.roi is not None:
            raise ValueError("roi and zones together: draw the roi as one of the zones")
        seen: set[str] = set()
        for i, z in enumerate(self.zones):
            if z.name in seen:
                raise ValueError(f"zones.{i}.name: duplicate zone name {z.name!r} in stream {self.name!r}")
            seen.add(z.name)
        return self

    @property
    def logical_names(self) -> tuple[str, ...]:
        """What the stream's results are logged as: its name, or ``<stream>.<zone>`` per zone."""
        return tuple(f"{self.name}.{z.name}" for z in self.zones) or (self.name,)

    @property
    def every_frame(self) -> bool:
        """Every frame classified: no rate, not keyframes only, no gate (the default)."""
        return (self.classify is None or self.classify.every_frame) and (self.gate is None or self.gate.motion is None)

    @property
    def is_live(self) -> bool:
        return bool(re.match(r"^(rtsps?|rtmp|https?|udp|tcp|srt)://", self.source)) or self.source.startswith("/dev/video")

    @property
    def effective_policy(self) -> str:
        return self.policy or ("drop_oldest" if self.is_live else "lossless")


class ModelConfig(_Model):
    backbone: str = Field("efficientnet_lite0", description="backbone name; `videoclf models` lists them")
    weights: str = Field("imagenet", description="'imagenet', 'none' (random init, speed tests) or a state_dict path")
    num_classes: Optional[int] = Field(None, gt=0, description="classes of a fine-tuned checkpoint (default 1000)")
    labels: Optional[str] = Field(None, description="labels file, one label per line, for a fine-tuned checkpoint")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        "auto", description="auto: bf16 on CPUs with AVX-512 BF16/AMX, fp16 on CUDA, else fp32; "
                            "int8 (openvino, onnxruntime): quantised on `calibration` frames with the ops that "
                            "cost agreement kept in float (`int8_min_agreement`)")
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto", description="inference engine; auto picks the fastest installed one for the device and "
                            "says in the report when it fell back")
    compile: bool = Field(False, description="torch backend: wrap the model in torch.compile (slow first batch)")
    calibration: Union[str, tuple[str, ...], None] = Field(
        None, description="video, or list of videos, whose frames calibrate int8; use footage like what will be "
                          "classified (default: the run's file streams, else the shipped sample)")
    calibration_frames: int = Field(300, ge=8, le=1800, description="int8: frames to calibrate on, spread over the "
                                                                    "first minute of the `calibration` clips; the "
                                                                    "one-time quantisation takes ~1-2 s per frame")
    int8_min_agreement: float = Field(
        0.95, gt=0, le=1, description="int8: ops go back to float until the top-1 agrees with fp32 on at least this "
                                      "share of the calibration frames (one-time, cached; unseen frames agree less, "
                                      "see README)")
    cache_dir: Optional[str] = Field(None, description="where exported/quantised models are cached "
                                                       "(default: $VIDEOCLF_CACHE or ~/.cache/videoclf)")
    max_batch: Union[Literal["auto"], Annotated[int, Field(ge=1, le=256)]] = Field(
        "auto", description="largest batch the classifier forms across streams; auto: the batch size and engine "
                            "streams measured fastest for this model on this CPU (measured once, cached with the export)")
    max_wait_ms: float = Field(10.0, ge=0, le=10_000, description="longest wait to fill a batch")
    top_k: int = Field(3, ge=1, le=20, description="labels written per frame")
    resize: Optional[int] = Field(None, gt=0, description="shorter-side resize before the center crop (default: backbone's)")
    input_size: Optional[int] = Field(None, ge=16, description="center-crop size fed to the model (default: backbone's)")
    threads: int = Field(0, ge=0, le=256, description="inference threads (0 = all cores; beside files of a megapixel "
                                                      "or more a frame, an OpenVINO engine measured fastest on one "
                                                      "stream leaves the decoders a core, and one measured fastest on "
                                                      "several does when the file's decode cost predicts more FPS)")
    engine_streams: Union[Literal["auto"], Annotated[int, Field(ge=1, le=64)]] = Field(
        "auto", description="OpenVINO streams (requests run in parallel, the threads shared out between them); auto: "
                            "measured with the batch size for one video stream, one per thread for several (their "
                            "decoders share the cores, and a stream's threads wait for each other when one is "
                            "preempted)")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        from videoclf.config.backbones import BACKBONES

        BACKBONES.get(v)  # raises ConfigError (a ValueError) with a suggestion and the valid names
        return v

    @property
    def spec(self):
        from videoclf.config.backbones import BACKBONES

        return BACKBONES.get(self.backbone)

    @property
    def batch_bound(self) -> int:
        """The largest batch the classifier may form (auto measures up to 8)."""
        return 8 if self.max_batch == "auto" else int(self.max_batch)

    @property
    def crop(self) -> int:
        return self.input_size or self.spec.input_size

    @property
    def resize_to(self) -> int:
        return self.resize or max(self.crop, round(self.crop * self.spec.resize_size / self.spec.input_size))


class OutputConfig(_Model):
    dir: str = Field("out", description="directory for label logs and report.json")
    format: Literal["jsonl", "csv"] = Field("jsonl", description="label log format")
    # watched outputs; the models live in pipeline/config/outputs.py
    video: bool = Field(False, description="write an annotated H.264 MP4 per stream (top-k, stream, time, FPS drawn)")
    segment_seconds: Optional[float] = Field(
        None, gt=0, description="rotate annotated videos after this many seconds of video; default: one file per "
                                "file source, 300 s segments for live sources; when set it applies to every stream")
    alerts: list[AlertRule] = Field(default_factory=list, description="alert rules → <dir>/events.jsonl (+ webhook)")
    web: Optional[WebConfig] = Field(None, description="serve the live web view and the HTTP API: {listen, token}, or "
                                                       "only PORT, :PORT or HOST:PORT (loopback default)")
    metrics: Optional[str] = Field(None, description="serve Prometheus /metrics on PORT, :PORT or HOST:PORT (loopback default)")
    retention: Retention = Field(default_factory=Retention, description="how long label logs, events, video, "
                                 "snapshots and clips are kept (age and size per kind); default: kept forever")
    min_free: int = Field(200_000_000, ge=0, description="free-space floor of output.dir (200MB, 2GiB or bytes): "
                          "below it annotated video and snapshots pause (label logs go on, and pause only when "
                          "the disk is full, losing no line); they resume when space is back")
    mqtt: Optional[MqttConfig] = Field(None, description="publish alert events, stream state and availability to an MQTT "
                                                         "broker: mqtt://[user[:password]@]host[:port], or a mapping with url "
                                                         "and the options below")
    timezone: Optional[str] = Field(None, description="IANA time zone (e.g. Europe/Paris) of the local date and time "
                                                      "drawn on live streams' annotated video (default: the system's "
                                                      "local zone)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            try:
                ZoneInfo(v)
            # ValueError: not a zone key at all (../x, an absolute path); OSError: a folder (Europe)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise ValueError("unknown time zone: use an IANA name such as Europe/Paris or UTC") from None
        return v

    @field_validator("mqtt", mode="before")
    @classmethod
    def _mqtt_url(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v

    @field_validator("web", mode="before")
    @classmethod
    def _web_listen(cls, v: Any) -> Any:
        return {"listen": str(v)} if isinstance(v, (str, int)) and not isinstance(v, bool) else v

    @field_validator("metrics")
    @classmethod
    def _address(cls, v: Optional[str], info: Any) -> Optional[str]:
        return check_address(v)

    _min_free = field_validator("min_free", mode="before")(parse_size)


class SupervisionConfig(_Model):
    """What the supervisor does when a stage process dies."""

    restart: Optional[bool] = Field(None, description="rebuild a crashed stage's fault domain (its stream's decoder, the "
                                    "classifier or the sink) while the rest runs on (default: on when any stream is live)")
    max_restarts_per_min: int = Field(5, ge=0, le=100, description="restarts allowed per fault domain in any 60 s; past "
                                      "it a decoder's stream is given up (the run exits 1 at the end), a classifier "
                                      "or sink fails the run")


class ClusterConfig(_Model):
    """A fleet on Ray (``videoclf run CONFIG --ray ADDRESS``)."""

    streams_per_node: int = Field(4, ge=1, le=1000, description="streams a node takes when it was not started with a "
                                  "videoclf_streams resource")
    workdir: str = Field("/tmp/videoclf-fleet", description="where each node keeps its shards' configs, logs and "
                         "node-local outputs (annotated video, snapshots); private: 0700 directories, 0600 files")
    poll_s: float = Field(0.25, gt=0, le=10, description="how often the driver collects label lines from the nodes")
    start_timeout_s: float = Field(60.0, gt=0, le=3600, description="a shard's supervisor must be started on its node "
                                   "within this long (a node's first also starts its agent); past it the shard's "
                                   "streams end in error and the run exits 1 once the others end")


class Config(_Model):
    # not configuration: the ${VAR}s the file named, with the values they were loaded with.
    # Whatever re-reads the config elsewhere (a fleet's shards) gets the file's references
    # and these values in its environment, never the expanded text on disk.
    _env: dict[str, str] = PrivateAttr(default_factory=dict)

    streams: list[StreamConfig] = Field(min_length=1, description="video sources to classify")
    model: ModelConfig = Field(default_factory=ModelConfig, description="backbone and inference settings")
    output: OutputConfig = Field(default_factory=OutputConfig, description="where and how results are written")
    target_fps: float = Field(30.0, gt=0, description="sustained FPS each stream should reach")
    max_frames: Optional[int] = Field(None, gt=0, description="stop each stream after this many frames")
    duration: Optional[float] = Field(None, gt=0, description="stop the run after this many seconds")
    supervision: SupervisionConfig = Field(default_factory=SupervisionConfig, description="crash handling")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="fleet on Ray: placement and collection")
    classify: ClassifyOptions = Field(default_factory=ClassifyOptions, description="every stream's classification "
                                      "rate (fps) or keyframes only; a stream's own classify keys win")
    gate: GateOptions = Field(default_factory=GateOptions, description="every stream's motion gate; a stream's own "
                              "gate wins")
    decode: DecodeOptions = Field(default_factory=DecodeOptions, description="every stream's decoder shortcuts; a "
                                  "stream's own decode keys win")
    smooth: Optional[SmoothOptions] = Field(None, description="smooth every stream's labels: {window: N} or {ema: "
                                            "ALPHA}; the label log adds the smoothed top-1 (default: off); a stream's "
                                            "own smooth wins")
    label_change: Optional[LabelChange] = Field(None, description="a label_change event (events.jsonl, MQTT, "
                                                "webhook) when a stream's smoothed top-1 changes and holds; a stream's "
                                                "own keys win")

    @property
    def env(self) -> dict[str, str]:
        """The environment variables the config named as ``${VAR}`` and their values."""
        return dict(self._env)

    @property
    def restart_enabled(self) -> bool:
        r = self.supervision.restart
        return any(s.is_live for s in self.streams) if r is None else r

    @model_validator(mode="after")
    def _stream_sampling(self) -> "Config":
        """Each stream carries its effective classify, gate and decode options: its own keys
        over the config's."""
        streams = []
        for i, s in enumerate(self.streams):
            upd = {"classify": merged(self.classify, s.classify), "gate": merged(self.gate, s.gate),
                   "decode": merged(self.decode, s.decode), "smooth": stream_smooth(self.smooth, s.smooth),
                   "label_change": stream_label_change(self.label_change, s.label_change)}
            if upd["classify"].keyframes and upd["gate"].motion is not None:
                raise ValueError(f"streams.{i}: classify.keyframes and gate.motion together: keyframes only are "
                                 f"already sparse; use one of them")
            streams.append(s if all(getattr(s, k) == v for k, v in upd.items()) else s.model_copy(update=upd))
        object.__setattr__(self, "streams", streams)
        return self

    @model_validator(mode="after")
    def _smoothed_alerts(self) -> "Config":
        """An alert on smoothed scores needs every stream smoothed (a rule watches them all)."""
        for i, rule in enumerate(self.output.alerts):
            bare = [s.name for s in self.streams if s.smooth is None]
            if rule.smoothed and bare:
                raise ValueError(f"output.alerts.{i}.smoothed: needs smooth (top level, or on every stream); "
                                 f"{', '.join(bare)} has none")
        return self

    @model_validator(mode="after")
    def _calibrate_on_the_streams(self) -> "Config":
        """int8 with no ``model.calibration`` calibrates on the file streams it will classify
        (live sources cannot be replayed: with none but those, the shipped sample)."""
        m = self.model
        if m.precision == "int8" and m.calibration is None:
            files = tuple(dict.fromkeys(s.source for s in self.streams if not s.is_live))
            if files:
                object.__setattr__(self, "model", m.model_copy(update={"calibration": files}))
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        seen: set[str] = set()
        for i, s in enumerate(self.streams):
            if s.name in seen:
                raise ValueError(f"streams.{i}.name: duplicate stream name {s.name!r}")
            seen.add(s.name)
        logged: dict[str, str] = {}  # every name a label log takes: streams and their zones
        for i, s in enumerate(self.streams):
            for name in s.logical_names:
                if name in logged and logged[name] != s.name:
                    raise ValueError(f"streams.{i}.{'zones' if s.zones else 'name'}: {name!r} is also the name of stream {logged[name]!r}; "
                                     f"rename the zone or the stream")
                logged[name] = s.name
        return self
