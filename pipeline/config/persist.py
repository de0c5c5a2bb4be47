"""Streams added or removed through the HTTP API are written to the config file, so that a
restart keeps them. The file is edited, not rewritten from the model: comments, key order and
``${VAR}`` references stay as the user wrote them (``ruamel.yaml`` round trip). The edited text
is checked as a whole config first and then replaces the file atomically (a new file beside
it, fsynced, renamed over it): a crash leaves the old file or the new one, never half of one."""
from __future__ import annotations

import io
import os
import re
import tempfile
from typing import Any, Callable

from videoclf.core.errors import ConfigError, ResourceError


def _edit(path: str, change: Callable[[Any], None]) -> str:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if re.search(r"^ +- ", text, re.MULTILINE):  # lists indented under their key, as most people write them
            yaml.indent(mapping=2, sequence=4, offset=2)
        doc = yaml.load(text)
    except OSError as exc:
        raise ResourceError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML any more: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("streams"), list):
        raise ConfigError(f"{path}: has no streams list to change")
    change(doc["streams"])
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _replace(path: str, text: str, check: Callable[[str], None]) -> None:
    """Write ``text`` beside ``path``, ``check`` it (raises on a mistake), then rename it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        check(tmp)
        os.replace(tmp, path)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself survives a power cut
        finally:
            os.close(dfd)
    except OSError as exc:
        raise ResourceError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def add_stream(path: str, stream: dict[str, Any], check: Callable[[str], None]) -> None:
    """Append ``stream`` (a mapping as written under ``streams:``) to the file's streams."""
    _replace(path, _edit(path, lambda streams: streams.append(stream)), check)


def remove_stream(path: str, name: str, check: Callable[[str], None]) -> None:
    """Remove the stream named ``name`` from the file's streams."""
    def drop(streams: list[Any]) -> None:
        keep = [s for s in streams if not (isinstance(s, dict) and s.get("name") == name)]
        if len(keep) == len(streams):
            raise ConfigError(f"{path}: has no stream named {name}")
        streams[:] = keep

    _replace(path, _edit(path, drop), check)
