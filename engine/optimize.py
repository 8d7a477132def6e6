"""Plumbing shared by the edit and generate loops: the per-group Adam and preview images as uint8."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .scene import PARAM_NAMES


def make_optimizer(params: dict[str, Tensor], lrs: dict[str, float]) -> torch.optim.Optimizer:
    """Adam with one named group per scene parameter (densification remaps state by group name)."""
    groups = [{"params": [params[n]], "lr": lrs[n], "name": n} for n in PARAM_NAMES]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def to_uint8(image: Tensor) -> np.ndarray:  # [H, W, 3] in [0, 1] -> [H, W, 3] uint8
    return (image.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
