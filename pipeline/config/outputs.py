"""Config models of the watched outputs: alert rules and listen addresses.

Kept out of config.py so that module stays small; config.py only adds the fields."""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Optional
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# <output.dir>/live/: the outputs sink's latest preview JPEG of each stream and the labels of
# the frame it shows (<stream>.jpg, <stream>.json), served by the web view
LIVE_DIR = "live"

_ADDR = re.compile(r"^(?:(?P<host>[A-Za-z0-9_.-]+|\[[0-9a-fA-F:]+\])?:)?(?P<port>\d{1,5})$")


class ClipOptions(BaseModel):
    """An event clip: the camera's own packets from ``pre_s`` before the event to ``post_s``
    after it, copied without re-encoding into ``<output.dir>/clips/`` (live cameras)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pre_s: float = Field(5.0, ge=0, le=60, description="seconds before the event's first frame the clip starts "
                                                       "(at the keyframe at or before it)")
    post_s: float = Field(5.0, ge=0, le=300, description="seconds after the event's first frame the clip lasts")


class AlertRule(BaseModel):
    """One alert: any label of ``when`` in a frame's top-k with at least ``min_score``,
    on ``for_frames`` consecutive frames, opens an event; no new event of this rule on the
    same stream until ``cooldown_s`` after the previous one closed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: tuple[str, ...] = Field(min_length=1, description="labels that trigger the rule (any of them)")
    min_score: float = Field(0.5, ge=0, le=1, description="lowest score that counts as seen")
    for_frames: int = Field(1, ge=1, le=100_000, description="consecutive frames needed to open an event")
    cooldown_s: float = Field(30.0, ge=0, description="quiet time after an event closes before the rule fires again")
    webhook: Optional[str] = Field(None, pattern=r"^https?://", description="URL that receives each event as a JSON POST")
    webhook_timeout_s: float = Field(2.0, gt=0, le=60, description="per-attempt HTTP timeout of the webhook")
    webhook_retries: int = Field(2, ge=0, le=10, description="extra attempts after a failed webhook POST")
    smoothed: bool = Field(False, description="match the smoothed top-k (`smooth`, needed on every stream) instead of "
                           "each frame's raw top-k")
    clip: Optional[ClipOptions] = Field(None, description="save a clip of the camera's stream around each event "
                                                           "(live streams; the event's `clip` names the file)")


def parse_address(value: str, key: str = "") -> tuple[str, int]:
    """'8080', ':8080', 'host:8080' → (host, port); the host defaults to loopback."""
    m = _ADDR.match(value.strip())
    if not m or not 0 < int(m.group("port")) < 65536:
        raise ValueError(f"{key}expected PORT, :PORT or HOST:PORT")
    return (m.group("host") or "127.0.0.1").strip("[]"), int(m.group("port"))


def check_address(value: Optional[str]) -> Optional[str]:
    if value is not None:
        parse_address(value)  # the config error names the key and the value
    return value



def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def _secret(v: Any) -> Any:
    """A token or password as a SecretStr from the start, so no error message can show it back."""
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return SecretStr(str(v))
    return v


class WebConfig(BaseModel):
    """``output.web``: the live web view and the HTTP API (``/api/*``, ``/healthz``, ``/readyz``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = Field(description="PORT, :PORT or HOST:PORT to serve on (loopback unless HOST is given)")
    token: Optional[SecretStr] = Field(
        None, description="bearer token every route but /healthz and /readyz then requires (Authorization: Bearer "
                          "TOKEN, or the cookie of /login); at least 16 characters; put it in ${VAR}; required unless "
                          "listen is loopback (127.0.0.0/8, ::1, localhost)")

    _token_text = field_validator("token", mode="before")(_secret)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_address(v)
        return v

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "WebConfig":
        # checked on the model, not the field: a field's error would show the token back
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("output.web.token: use a token of at least 16 characters (e.g. the output of: "
                             "openssl rand -hex 16)")
        host = self.address[0]
        if self.token is None and not is_loopback(host):
            raise ValueError(f"output.web.token: required when listening on {host} (only loopback may run open): "
                             "set it, e.g. to ${VIDEOCLF_WEB_TOKEN}")
        return self

    @property
    def address(self) -> tuple[str, int]:
        return parse_address(self.listen)


_MQTT = re.compile(r"^(?P<scheme>mqtts?)://(?:(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@)?(?P<host>[A-Za-z0-9_.-]+|\[[0-9a-fA-F:]+\])"
                   r"(?::(?P<port>\d{1,5}))?/?$")


def _text(v: Any) -> Any:
    """A YAML number is a password too (and never shown back in an error)."""
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class MqttConfig(BaseModel):
    """Where alert events and stream state are published (Home Assistant, Node-RED, …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="mqtt://[user[:password]@]host[:port] (mqtts:// for TLS); percent-encode an @, / or "
                                 ": of the password (%40, %2F, %3A), or give username and password as keys")
    username: Optional[str] = Field(None, min_length=1, description="user name at the broker (instead of the url's)")
    password: Optional[SecretStr] = Field(None, description="password at the broker, as written (no encoding); put it "
                                                            "in ${VAR}; never shown nor written anywhere")
    ca_file: Optional[str] = Field(None, description="mqtts:// only: PEM file of the CA that signed the broker's "
                                                     "certificate (default: the system's CAs)")
    prefix: str = Field("videoclf", pattern=r"^[^#+\s]+$", description="topic prefix: <prefix>/<stream>/events|state, "
                                                                      "<prefix>/availability")
    qos: int = Field(1, ge=0, le=2, description="MQTT QoS of every message")
    client_id: str = Field("videoclf", min_length=1, max_length=64, description="MQTT client id (one client per run "
                                                                                "carries events, state and discovery)")
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery configs (label and FPS sensors per stream)")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery topic prefix")
    queue: int = Field(1000, ge=1, le=1_000_000, description="messages kept while the broker is away; past it new ones "
                                                             "are dropped and counted")

    _secret = field_validator("password", mode="before")(_text)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        m = _MQTT.match(v)
        if not m or (m.group("port") and not 0 < int(m.group("port")) < 65536):
            raise ValueError("expected mqtt://[user[:password]@]host[:port] or mqtts://… (percent-encode an @ or / "
                             "of the password as %40, %2F)")
        return v

    @model_validator(mode="after")
    def _credentials_and_ca(self) -> "MqttConfig":
        m = _MQTT.match(self.url)
        assert m is not None
        if (self.username is not None or self.password is not None) and m.group("user") is not None:
            raise ValueError("give the user and password either in url or as username/password, not both")
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        if self.ca_file is not None:
            if m.group("scheme") != "mqtts":
                raise ValueError("ca_file needs an mqtts:// url")
            _check_readable(self.ca_file)
        return self

    @property
    def parts(self) -> dict:
        """Scheme, host, port and the credentials, percent-decoded (url) or as given (keys)."""
        m = _MQTT.match(self.url)
        assert m is not None
        tls = m.group("scheme") == "mqtts"
        user, pw = m.group("user"), m.group("pw")
        if self.username is not None:
            user, pw = self.username, self.password.get_secret_value() if self.password is not None else None
        elif user is not None:
            user, pw = unquote(user), unquote(pw) if pw is not None else None
        return {"tls": tls, "host": m.group("host").strip("[]"), "port": int(m.group("port") or (8883 if tls else 1883)),
                "user": user or None, "password": pw}


def _check_readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"ca_file {path}: cannot read ({exc.strerror or exc})") from None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


def parse_size(v: Any) -> Any:
    """2000000, "2MB", "1.5 GiB" → bytes (KB, MB, GB, TB are powers of 1000; KiB, … of 1024)."""
    if isinstance(v, str):
        m = _SIZE.match(v)
        if not m:
            raise ValueError("expected a size such as 500MB, 2GiB or a number of bytes")
        power = " KMGT".index((m.group(2) or " ").upper())
        return int(float(m.group(1)) * (1024 if m.group(3) else 1000) ** power)
    return v


class RetentionRule(BaseModel):
    """How long one kind of output is kept: the oldest files go first, past either limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age_days: Optional[float] = Field(None, gt=0, description="delete files older than this many days")
    max_bytes: Optional[int] = Field(None, gt=0, description="keep at most this much (500MB, 2GiB or bytes), "
                                                             "oldest deleted first; the file being written is kept")

    _size = field_validator("max_bytes", mode="before")(parse_size)


class Retention(BaseModel):
    """``output.retention``: per kind of output, what is kept. Deletions are logged at debug
    level and counted in report.json and in ``videoclf_retention_deleted_files_total``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: RetentionRule = Field(default_factory=RetentionRule, description="label logs of earlier days "
                                  "(<stream>.<day>.jsonl); the current day's log is never deleted")
    events: RetentionRule = Field(default_factory=RetentionRule, description="event logs of earlier days "
                                  "(events.<day>.jsonl)")
    video: RetentionRule = Field(default_factory=RetentionRule, description="annotated video files")
    snapshots: RetentionRule = Field(default_factory=RetentionRule, description="alert snapshots")
    clips: RetentionRule = Field(default_factory=RetentionRule, description="event clips (clips/*.ts)")
    every_s: float = Field(60.0, gt=0, le=86400, description="how often the rules are applied (also at start, "
                                                             "when a video file closes and when space runs low)")

    @property
    def active(self) -> bool:
        rules = (self.labels, self.events, self.video, self.snapshots, self.clips)
        return any(r.max_age_days or r.max_bytes for r in rules)
