"""Interim selection tools on engine.masks.contrib's compositing weights (until engine/masks/selection lands).

A tool marks pixels of the clicked view (a disc, a rectangle); a Gaussian is selected when most of its visible
compositing weight in that view falls on the marked pixels. Only the window around the marked pixels is
rasterized (a camera cropped to it), so a small brush costs little.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.camera import Cameras
from engine.masks.contrib import compositing_weights


def _crop(camera: Cameras, x0: int, y0: int, x1: int, y1: int) -> Cameras:
    """The same view restricted to pixels [x0, x1) x [y0, y1) (principal point shifted)."""
    Ks = camera.Ks[0:1].clone()
    Ks[:, 0, 2] -= x0
    Ks[:, 1, 2] -= y0
    return Cameras(camera.viewmats[0:1], Ks, x1 - x0, y1 - y0)


def _covered(scene, camera: Cameras, inside, box) -> Tensor:
    """Selected [N] for the marked pixels `inside(xs, ys) -> bool` within the pixel box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (max(0, math.floor(box[0])), max(0, math.floor(box[1])),
                      min(camera.width, math.ceil(box[2])), min(camera.height, math.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        return torch.zeros(len(scene))
    # A margin around the box so a Gaussian's weight just outside the marked pixels counts against it.
    m = 8
    cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(camera.width, x1 + m), min(camera.height, y1 + m)
    window = _crop(camera, cx0, cy0, cx1, cy1)
    ys, xs = torch.meshgrid(torch.arange(cy0, cy1) + 0.5, torch.arange(cx0, cx1) + 0.5, indexing="ij")
    marked = inside(xs, ys)
    vw = compositing_weights(scene, window)
    weight_in = vw.splat(marked.float()[None, ..., None])[0, :, 0]
    total = vw.totals()[0]
    return ((weight_in > 0.5 * total) & (weight_in > 1e-3)).float()


def _disc(center, radius: float):
    return lambda xs, ys: (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


def pick(scene, camera, pixel) -> Tensor:
    r = 1.5
    return _covered(scene, camera, _disc(pixel, r), (pixel[0] - r, pixel[1] - r, pixel[0] + r, pixel[1] + r))


def brush(scene, camera, pixels, radius: float) -> Tensor:
    out = torch.zeros(len(scene))
    for p in pixels:
        box = (p[0] - radius, p[1] - radius, p[0] + radius, p[1] + radius)
        out = torch.maximum(out, _covered(scene, camera, _disc(p, radius), box))
    return out


def rectangle(scene, camera, pixel_min, pixel_max) -> Tensor:
    def inside(xs, ys):
        return (xs >= pixel_min[0]) & (xs <= pixel_max[0]) & (ys >= pixel_min[1]) & (ys <= pixel_max[1])

    return _covered(scene, camera, inside, (*pixel_min, *pixel_max))


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
