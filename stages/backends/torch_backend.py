"""Eager PyTorch: channels_last, bf16 autocast on CPUs that have it, fp16 on CUDA, optional
torch.compile."""
from __future__ import annotations

from typing import Any

import numpy as np


class TorchBackend:
    def __init__(self, model: Any, ctx: Any) -> None:
        import torch

        self.torch = torch
        self.device = ctx.device
        # channels_last lets oneDNN/cuDNN pick their fastest convolution kernels
        model = model.to(self.device, memory_format=torch.channels_last)
        self.model = torch.compile(model) if ctx.cfg.compile else model
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(ctx.precision)
        self.details = {"compiled": bool(ctx.cfg.compile)}

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(batch).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=self.dtype or torch.float32,
                                                   enabled=self.dtype is not None):
            return self.model(x).float().cpu().numpy()


def load(model: Any, ctx: Any) -> TorchBackend:
    return TorchBackend(model, ctx)
