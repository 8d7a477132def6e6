"""Interim selection tools on engine.masks.contrib's compositing weights (until engine/masks/selection lands).

A tool marks pixels of the clicked view (a disc, a rectangle); a Gaussian is selected when most of its visible
compositing weight in that view falls on the marked pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.masks.contrib import compositing_weights


def _covered(scene, camera, marked: Tensor) -> Tensor:  # marked [H, W] bool -> [N] float
    vw = compositing_weights(scene, camera[0:1])
    inside = vw.splat(marked.float()[None, ..., None])[0, :, 0]
    total = vw.totals()[0]
    return ((inside > 0.5 * total) & (inside > 1e-3)).float()


def _disc(camera, center, radius: float) -> Tensor:
    ys, xs = torch.meshgrid(torch.arange(camera.height) + 0.5, torch.arange(camera.width) + 0.5, indexing="ij")
    return (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


def pick(scene, camera, pixel) -> Tensor:
    return _covered(scene, camera, _disc(camera, pixel, 1.5))


def brush(scene, camera, pixels, radius: float) -> Tensor:
    marked = torch.zeros(camera.height, camera.width, dtype=torch.bool)
    for p in pixels:
        marked |= _disc(camera, p, radius)
    return _covered(scene, camera, marked)


def rectangle(scene, camera, pixel_min, pixel_max) -> Tensor:
    ys, xs = torch.meshgrid(torch.arange(camera.height) + 0.5, torch.arange(camera.width) + 0.5, indexing="ij")
    marked = (xs >= pixel_min[0]) & (xs <= pixel_max[0]) & (ys >= pixel_min[1]) & (ys <= pixel_max[1])
    return _covered(scene, camera, marked)


def grow(scene, mask: Tensor, steps: int = 1, k: int = 8) -> Tensor:
    from scipy.spatial import cKDTree

    pts = scene.means.detach().numpy()
    _, nn = cKDTree(pts).query(pts, k=k)
    out = mask.clone()
    for _ in range(steps):
        out = torch.maximum(out, out[torch.as_tensor(nn)].max(dim=1).values)
    return out


def shrink(scene, mask: Tensor, steps: int = 1, k: int = 8) -> Tensor:
    return 1.0 - grow(scene, 1.0 - mask, steps, k)
