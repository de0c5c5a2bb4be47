"""Where each output of a fleet run goes, and how a shard's config is made without secrets.

Every ``output`` key is in exactly one of three sets, so none is dropped without a word:

- **carried** to each shard, which writes it on its node: the label-log format, annotated
  video (it stays on the node, in the shard's output dir), the alert rules (each shard runs
  them on its streams; snapshots stay beside the video, webhooks are posted from the node),
  ``metrics`` (shard *k* serves on PORT+k), the overlay's ``timezone``, and ``retention`` and
  ``min_free`` (each node's disk is bounded on the node; the driver applies the label and
  event rules to the central logs too);
- **central**, done by the driver: ``dir`` (label logs, ``events.jsonl`` with every shard's
  events, ``report.json``) and ``mqtt`` (events, state and availability, published from
  the driver: one client, one availability topic, the same events as ``events.jsonl``);
- **refused** with one line: what needs one host's files, i.e. the web view.

A key that is in none of them (added later) is refused when it is set, not ignored.

A shard's config keeps the user's ``${VAR}`` references: every value the config's own
variables expanded to is written back as ``${VAR}``, and the values travel in the shard's
environment (Ray actor arguments, then the subprocess's env), never in a file.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from videoclf.config.schema import Config, OutputConfig
from videoclf.config.load import _ENV
from videoclf.core.errors import ConfigError

CARRIED = frozenset({"format", "video", "segment_seconds", "alerts", "metrics", "timezone", "retention", "min_free"})
CENTRAL = frozenset({"dir", "mqtt"})
REFUSED = {"web": "the web view reads each stream's preview pictures from one host's output.dir, and a fleet's "
                  "streams run on other nodes; remove it (or --web) to run with --ray, or run the streams locally"}


def fleet_refusal(output: OutputConfig, known: frozenset[str] = CARRIED | CENTRAL) -> Optional[str]:
    """The one line that refuses ``output`` in a fleet, or None when every key set is handled.
    ``known``: the keys a fleet carries or gathers (the others must be left at their default)."""
    for key, field in OutputConfig.model_fields.items():
        value = getattr(output, key)
        if key in known or value == field.get_default(call_default_factory=True):
            continue
        why = REFUSED.get(key, "a fleet does not carry it to its nodes yet; remove it to run with --ray")
        return f"output.{key}: not available with --ray: {why}"
    return None


def check_fleet(cfg: Config) -> None:
    """Raise a ConfigError (exit 2) naming the first output key (or a stream's zones) a fleet cannot honour."""
    line = fleet_refusal(cfg.output)
    if line:
        raise ConfigError(line)
    for s in cfg.streams:  # the driver gathers one log per stream: a zone's would stay on its node
        if s.zones:
            raise ConfigError(f"streams.{s.name}.zones: not available with --ray: the driver gathers one label log "
                              f"per stream; run this stream without --ray, or give each zone a stream with a roi")


def template(value: Any, env: dict[str, str]) -> Any:
    """``value`` with every occurrence of a variable's value in its strings written back as
    ``${VAR}``: loading the result with ``env`` set gives ``value`` again. One pass, longest
    value first, so no replacement lands inside another's ``${VAR}``."""
    pairs = {v: k for k, v in sorted(env.items(), key=lambda kv: len(kv[1])) if v}
    if not pairs:
        return value
    pattern = re.compile("|".join(re.escape(v) for v in sorted(pairs, key=len, reverse=True)))

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return pattern.sub(lambda m: "${" + pairs[m.group(0)] + "}", v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)


def shard_config(cfg: Config, streams: list[dict[str, Any]], metrics: Optional[tuple[str, int]],
                 env: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A shard's config (its streams, the run's model and the carried outputs), templated,
    and the variables it names (only those go to the shard: the MQTT password, say, does
    not); the agent adds the shard's own output.dir."""
    out = cfg.output.model_dump(mode="json", include=set(CARRIED), exclude_defaults=True)
    out["format"] = cfg.output.format
    out.pop("metrics", None)
    if metrics:
        out["metrics"] = f"{metrics[0]}:{metrics[1]}"
    config: dict[str, Any] = {"streams": streams, "model": cfg.model.model_dump(mode="json", exclude_defaults=True),
                              "output": out, "target_fps": cfg.target_fps,
                              "supervision": cfg.supervision.model_dump(mode="json", exclude_defaults=True)}
    if cfg.max_frames:
        config["max_frames"] = cfg.max_frames
    config = template(config, env)
    named = set(_ENV.findall(json.dumps(config)))
    return config, {k: v for k, v in env.items() if k in named}


def metrics_port(cfg: Config, index: int) -> Optional[tuple[str, int]]:
    """Shard ``index``'s /metrics: output.metrics's host and port + index (shards on one host
    must not share a port)."""
    if not cfg.output.metrics:
        return None
    from videoclf.config.outputs import parse_address

    host, port = parse_address(cfg.output.metrics)
    return host, port + index


def write_targets(path: Path, shards: dict[str, Any], nodes: dict[str, Any]) -> None:
    """A Prometheus file_sd list of the running shards' endpoints, labelled by node and shard:
    Prometheus attaches the labels to every series it scrapes there."""
    targets = []
    for sid, sh in shards.items():
        if sh.metrics and not sh.done and sh.node in nodes:
            host = nodes[sh.node].address if sh.metrics[0] in ("0.0.0.0", "::") else sh.metrics[0]
            targets.append({"targets": [f"{host}:{sh.metrics[1]}"], "labels": {"node": sh.node, "shard": sid}})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(targets, indent=1))
    os.replace(tmp, path)
