"""Files that ship with the package: the sample clip and the sample configs.

They live in the repository's ``samples/`` and ``configs/`` folders and are installed as the
packages ``videoclf.samples`` and ``videoclf.configs`` (pyproject.toml maps them), so an
installed videoclf finds them from any directory, and a checkout finds the same files.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from videoclf.core.errors import InputError

SAMPLE_NAME = "bigbuckbunny_360p.mp4"


def _shipped(package: str, name: str) -> Optional[Path]:
    # the data folders are packages of their own: look in the folder the package spans
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def sample_clip() -> Path:
    """The shipped sample video (the default calibration and bench clip)."""
    path = _shipped("videoclf.samples", SAMPLE_NAME)
    if path is None:
        raise InputError(f"the shipped sample {SAMPLE_NAME} is not installed (reinstall videoclf, "
                         "or pass a clip explicitly)")
    return path


def shipped_config(name: str) -> Optional[Path]:
    """A config that ships with the package, by name (``sample`` or ``sample.yaml``)."""
    if "/" in name or "\\" in name:
        return None
    return _shipped("videoclf.configs", name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")


def shipped_sample(relative: str) -> Optional[Path]:
    """``samples/<file>`` in a config, read outside a checkout: the installed copy."""
    parts = Path(relative).parts
    if len(parts) == 2 and parts[0] == "samples":
        return _shipped("videoclf.samples", parts[1])
    return None
