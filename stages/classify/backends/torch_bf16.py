"""bf16 on CPU the accurate way: BatchNorm folded into the convolutions in fp32, then oneDNN
runs the convolutions and matmuls with bf16 inputs and fp32 accumulation while every
activation between layers stays fp32.

Why not ``torch.autocast``: autocast stores every activation in bf16 (8-bit mantissa), so
rounding builds up over EfficientNet's 16 blocks, residual adds and unfused BatchNorms;
measured top-1 agreement with fp32 on 634 real frames was 89.8 % (autocast) against 98.6 %
here, and faster on this AMX CPU (53 vs 13-20 img/s at batch 8; see benchmarks/agreement.py).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator

# (conv, batchnorm) attribute pairs of stages/classify/efficientnet_lite.py (lukemelas layout); the
# torchvision backbones are covered by the Sequential(conv, bn, ...) rule in fold_batchnorm
_LITE_PAIRS = (("_conv_stem", "_bn0"), ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
               ("_project_conv", "_bn2"), ("_conv_head", "_bn1"))


def fold_batchnorm(model: Any) -> tuple[Any, int]:
    """A copy of the eval-mode ``model`` with each BatchNorm that directly follows a conv folded
    into that conv's weights and bias (in fp32, before any bf16 rounding); returns the count."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    folded = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _LITE_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
                folded += 1
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (conv_key, conv), (bn_key, bn) in zip(children, children[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[conv_key] = fuse_conv_bn_eval(conv, bn)
                    module._modules[bn_key] = nn.Identity()
                    folded += 1
    return model, folded


@contextmanager
def onednn_bf16() -> Iterator[None]:
    """Within the block, oneDNN computes fp32 convolutions and matmuls with bf16 inputs (fp32
    accumulation, fp32 outputs). Scoped and restored, so fp32 models elsewhere in the same
    process (a test session, a second backend) keep full fp32."""
    from torch.backends import mkldnn

    saved = mkldnn.conv.fp32_precision, mkldnn.matmul.fp32_precision
    mkldnn.conv.fp32_precision = mkldnn.matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        mkldnn.conv.fp32_precision, mkldnn.matmul.fp32_precision = saved
