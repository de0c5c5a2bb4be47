"""How `videoclf tune` compares two ways of producing the model's answer (int8 against fp32,
the fast decode against the normal one): top-1 agreement on *confident* frames, those whose
reference top-1 beats its top-2 by at least ``MARGIN`` in softmax probability (a near-tie
flips under any change and says nothing about accuracy), held to ``BOUND``; and how a verdict
is stored."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

MARGIN = 0.1  # top-1 minus top-2 softmax probability of a confident frame
BOUND = 0.99  # top-1 agreement with the reference on confident frames (int8 against fp32, fast decode against normal)


def confident_mask(logits: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    """Frames whose softmax top-1 beats top-2 by at least ``margin``."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = z / z.sum(axis=1, keepdims=True)
    top2 = np.sort(p, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) >= margin


def store(path: Path, verdict: dict[str, Any]) -> Path:
    """Write ``verdict`` to ``path`` whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(verdict, indent=1))
    os.replace(tmp, path)
    return path
