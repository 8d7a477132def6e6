"""A known object for generation tests and bench/generate.py: what a run toward a reference prior must rebuild."""

from __future__ import annotations

import torch

from engine.generate import primitive_scene
from engine.scene import GaussianScene, rgb_to_sh0


def two_blob_reference() -> GaussianScene:
    """A red blob and a smaller blue one beside and above it: 240 opaque Gaussians within 0.4 of the origin."""
    red = primitive_scene("sphere", 120, radius=0.18, center=(-0.2, 0.0, 0.0), opacity=0.9, seed=1)
    blue = primitive_scene("sphere", 120, radius=0.14, center=(0.22, 0.05, 0.12), opacity=0.9, seed=2)
    red = red.replace(sh0=rgb_to_sh0(torch.tensor([0.85, 0.15, 0.1])).expand(len(red), 1, 3).clone())
    blue = blue.replace(sh0=rgb_to_sh0(torch.tensor([0.1, 0.3, 0.9])).expand(len(blue), 1, 3).clone())
    return GaussianScene.concat([red, blue])
