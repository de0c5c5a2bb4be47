"""Reading a config: a YAML file (or a shipped config by name) or a mapping, with ``${VAR}``
expanded from the environment, file patterns expanded into streams and relative paths resolved,
validated into a ``Config`` with every mistake reported at once."""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from videoclf.config.errors import BoundedLoader, Marks, format_errors, yaml_marks
from videoclf.config.schema import Config
from videoclf.core.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a camera config is a few KB; refuse YAML bombs early


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, path: str, origin: str, used: dict[str, str]) -> Any:
    """``${VAR}`` → its value; ``used`` collects the variables met, with their values."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(f"{origin}: {path}: environment variable {m.group(1)} is not set")
            used[m.group(1)] = os.environ[m.group(1)]
            return os.environ[m.group(1)]

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k), origin, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}.{i}", origin, used) for i, v in enumerate(value)]
    return value


_GLOB = re.compile(r"[*?[]")


def _expand_globs(data: dict[str, Any], origin: str) -> dict[str, Any]:
    """A stream whose source is a file pattern (``/data/archive/*.mp4``) becomes one stream per
    matching file, named ``<name>-<file stem>``: a folder of recordings is classified as a set."""
    streams = data.get("streams")
    if not isinstance(streams, list):
        return data
    out: list[Any] = []
    for i, s in enumerate(streams):
        src = s.get("source") if isinstance(s, dict) else None
        if not isinstance(src, str) or "://" in src or not _GLOB.search(src):
            out.append(s)
            continue
        files = sorted(f for f in glob.glob(os.path.expanduser(src)) if os.path.isfile(f))
        if not files:
            raise ConfigError(f"{origin}: streams.{i}.source: no file matches {src!r}")
        for f in files:
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(f).stem)
            out.append({**s, "source": f, "name": f"{s.get('name', 'file')}-{stem}"[:64]})
    return {**data, "streams": out}


def parse_config(data: Any, origin: str = "<config>", marks: Optional[Marks] = None,
                 env: Optional[dict[str, str]] = None) -> Config:
    """Validate ``data``; every mistake is reported at once, one line each (with its line and
    column in the file when ``marks`` are given). ``env``: variables an earlier load of the
    same settings expanded (``data`` re-dumped from a Config holds their values)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping with a 'streams' key")
    used: dict[str, str] = dict(env or {})
    data = _expand_globs(_expand_env(data, "", origin, used), origin)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError("\n".join(format_errors(err, Config, origin, marks, data))) from None
    cfg._env = used
    return cfg


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; a name that is no file but a shipped config
    (``sample``) is that config."""
    p = Path(path)
    if not p.exists():
        from videoclf.config.assets import shipped_config

        p = shipped_config(str(path)) or p
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: config is {size} bytes; the limit is {MAX_CONFIG_BYTES}")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from None
    try:
        data = yaml.load(text, Loader=BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}:{where}: invalid YAML: {problem}") from None
    return parse_config(_resolve_relative(data, p.parent), str(p), yaml_marks(text))


def _resolve_relative(data: Any, base: Path) -> Any:
    """Relative paths are taken from the working directory, like any CLI; when that does not
    exist but the path does exist beside the config file, use that one."""
    if not isinstance(data, dict):
        return data

    def fix(path: Any) -> Any:
        if not isinstance(path, str) or "://" in path or os.path.isabs(path) or os.path.exists(path):
            return path
        alt = base / path
        if alt.exists():
            return str(alt)
        from videoclf.config.assets import shipped_sample  # samples/… outside a checkout: the installed copy

        shipped = shipped_sample(path)
        return str(shipped) if shipped else path

    for s in data.get("streams") or []:
        if isinstance(s, dict) and "source" in s:
            s["source"] = fix(s["source"])
    model = data.get("model")
    if isinstance(model, dict):
        for key in ("weights", "labels", "calibration"):
            if key in model and isinstance(model[key], list):
                model[key] = [fix(p) for p in model[key]]
            elif key in model and model[key] not in ("imagenet", "none"):
                model[key] = fix(model[key])
    return data
