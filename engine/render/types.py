"""The one output type every render backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class RenderOutput:
    rgb: Tensor  # [C, H, W, D] composited colour (D = 3, or the width of a `colors` override), background added
    alpha: Tensor  # [C, H, W, 1] accumulated opacity
    depth: Tensor  # [C, H, W, 1] expected depth (accumulated z / alpha; 0 where alpha is 0)
    meta: dict = field(default_factory=dict)  # backend-specific extras (radii, means2d, timings, ...)
