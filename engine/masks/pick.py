"""Ray pick: which Gaussians a click actually hits, and the 3D point under a pixel.

A pick is decided by compositing weight, not by the nearest centre: the Gaussians that contribute to the
clicked pixel (alpha x transmittance) at least `min_fraction` of the strongest one. Only a small crop around
the click is splatted (`crop_camera`), so a pick costs one projection of the scene plus a few pixels.
A viewer that reports a world ray (origin, direction), like Viser, gets a tiny camera looking along the ray
(`ray_camera`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..camera import Cameras, look_at
from ..scene import GaussianScene
from .compositing import compositing_weights

# Crop half-size (pixels) splatted around a click: big enough that gsplat's off-screen Jacobian clamp (at 1.3x
# the crop's field of view) leaves the footprints of Gaussians hitting the clicked pixel unchanged in practice.
CROP_RADIUS = 8
# Accumulated opacity below which a pixel counts as empty (a click into the background).
EMPTY_ALPHA = 0.05


class NothingHit(ValueError):
    """The click or ray hits no Gaussian."""


def _single(camera: Cameras) -> Cameras:
    if len(camera) != 1:
        raise ValueError(f"expected one camera, got {len(camera)}")
    return camera


def crop_camera(camera: Cameras, x0: int, y0: int, width: int, height: int) -> Cameras:
    """The same view restricted to the pixels [x0, x0 + width) x [y0, y0 + height) of `camera`."""
    Ks = camera.Ks.clone()
    Ks[:, 0, 2] -= x0
    Ks[:, 1, 2] -= y0
    return Cameras(camera.viewmats, Ks, int(width), int(height))


def ray_camera(origin, direction, *, size: int = 2 * CROP_RADIUS + 1, pixel_angle: float = 1e-3) -> Cameras:
    """A `size` x `size` camera at `origin` looking along `direction`; its centre pixel is the ray.
    pixel_angle: radians per pixel (1e-3 is about one pixel of a 1000-pixel-wide, 57-degree view)."""
    origin = torch.as_tensor(origin, dtype=torch.float32).flatten()
    direction = torch.as_tensor(direction, dtype=torch.float32).flatten()
    if origin.shape != (3,) or direction.shape != (3,) or not torch.isfinite(torch.cat([origin, direction])).all():
        raise ValueError("a ray needs a finite origin and direction of 3 numbers each")
    if direction.norm() < 1e-12:
        raise ValueError("the ray direction must not be zero")
    direction = direction / direction.norm()
    up = (0.0, 0.0, 1.0) if abs(float(direction[2])) < 0.99 else (0.0, 1.0, 0.0)
    viewmat = look_at(origin, origin + direction, up)
    focal = 1.0 / pixel_angle
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return Cameras(viewmat[None], K[None], size, size)


def pixel_contributions(
    scene: GaussianScene, camera: Cameras, x: float, y: float, *, radius: int = 0
) -> tuple[Tensor, Tensor]:
    """(Gaussian indices [M], their summed compositing weight [M]) over the pixels within `radius` of the
    pixel containing (x, y) in `camera` (one camera). Empty tensors when nothing is hit."""
    camera = _single(camera)
    if not (0 <= x < camera.width and 0 <= y < camera.height):
        raise NothingHit(f"pixel ({x:g}, {y:g}) lies outside the {camera.width}x{camera.height} image")
    px, py = int(math.floor(x)), int(math.floor(y))
    half = max(CROP_RADIUS, radius)
    crop = crop_camera(camera, px - half, py - half, 2 * half + 1, 2 * half + 1)
    vw = compositing_weights(scene, crop)
    cx, cy = vw.pixel % crop.width, torch.div(vw.pixel, crop.width, rounding_mode="floor")
    near = (cx - half) ** 2 + (cy - half) ** 2 <= radius * radius
    gauss, weight = vw.gauss[near], vw.weight[near]
    if gauss.numel() == 0:
        return gauss, weight
    unique, inverse = torch.unique(gauss, return_inverse=True)
    summed = torch.zeros(len(unique)).index_add_(0, inverse, weight)
    return unique, summed


def pick(
    scene: GaussianScene, camera: Cameras, x: float, y: float, *, radius: int = 0, min_fraction: float = 0.1
) -> Tensor:
    """Mask [N] of the Gaussians a click at pixel (x, y) hits: those whose compositing weight there is at
    least `min_fraction` of the strongest contributor's. Raises NothingHit for a click into empty space."""
    idx, weight = pixel_contributions(scene, camera, x, y, radius=radius)
    if idx.numel() == 0 or float(weight.max()) < EMPTY_ALPHA:
        raise NothingHit(f"the click at pixel ({x:g}, {y:g}) hits no Gaussian")
    mask = torch.zeros(len(scene))
    mask[idx[weight >= min_fraction * weight.max()]] = 1.0
    return mask


def pick_patch(
    scene: GaussianScene, camera: Cameras, x: float, y: float, *, radius: float, min_weight: float = 0.05,
    depth_band: float = 3.0,
) -> Tensor:
    """Mask [N] of the surface patch a click points at: the Gaussians seen (summed compositing weight at
    least `min_weight`) in the disc of `radius` pixels around (x, y) whose depth lies within `depth_band`
    patch radii (the disc's size in the world at the clicked depth) of the depth under the click, so the patch
    stays on the clicked surface instead of taking what lies behind a silhouette. Raises NothingHit when the
    clicked pixel is empty."""
    camera = _single(camera)
    if radius <= 0:
        raise ValueError(f"the pick radius must be positive, got {radius}")
    centre, centre_weight = pixel_contributions(scene, camera, x, y)
    if centre.numel() == 0 or float(centre_weight.sum()) < EMPTY_ALPHA:
        raise NothingHit(f"the click at pixel ({x:g}, {y:g}) hits no Gaussian")
    viewmat = camera.viewmats[0].float().cpu()
    means = scene.means.detach().float().cpu()

    def depth_of(index: Tensor) -> Tensor:
        return means[index] @ viewmat[2, :3] + viewmat[2, 3]

    depth = float((centre_weight * depth_of(centre)).sum() / centre_weight.sum())
    world_radius = radius * depth / float(camera.Ks[0, 0, 0])
    index, weight = pixel_contributions(scene, camera, x, y, radius=int(math.ceil(radius)))
    near = (depth_of(index) - depth).abs() <= depth_band * world_radius
    keep = index[(weight >= min_weight) & near]
    mask = torch.zeros(len(scene))
    mask[keep] = 1.0
    mask[centre[centre_weight >= 0.1 * centre_weight.max()]] = 1.0  # what the clicked pixel itself shows
    return mask


def pick_ray(scene: GaussianScene, origin, direction, *, pixel_angle: float = 1e-3, min_fraction: float = 0.1) -> Tensor:
    """`pick` for a world ray (origin [3], direction [3]), as a 3D viewer reports a click."""
    camera = ray_camera(origin, direction, pixel_angle=pixel_angle)
    c = camera.width / 2
    try:
        return pick(scene, camera, c, c, min_fraction=min_fraction)
    except NothingHit:
        raise NothingHit(f"the ray from {_fmt(origin)} along {_fmt(direction)} hits no Gaussian") from None


def click_point(scene: GaussianScene, camera: Cameras, x: float, y: float) -> Tensor:
    """World point [3] under pixel (x, y): the pixel's centre ray at the rendered (expected) depth.
    Raises NothingHit when the pixel is (nearly) empty."""
    camera = _single(camera)
    idx, weight = pixel_contributions(scene, camera, x, y)
    alpha = float(weight.sum()) if idx.numel() else 0.0
    if alpha < EMPTY_ALPHA:
        raise NothingHit(f"the click at pixel ({x:g}, {y:g}) hits no Gaussian (nothing rendered there)")
    viewmat = camera.viewmats[0].float()
    means = scene.means.detach().float().cpu()[idx]
    z = (means @ viewmat[:3, :3].T + viewmat[:3, 3])[:, 2]
    depth = float((weight * z).sum()) / alpha
    K = camera.Ks[0].float()
    u, v = math.floor(x) + 0.5, math.floor(y) + 0.5
    ray_cam = torch.tensor([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0]) * depth
    cam_to_world = torch.linalg.inv(viewmat)
    return cam_to_world[:3, :3] @ ray_cam + cam_to_world[:3, 3]


def _fmt(v) -> str:
    return "(" + ", ".join(f"{float(t):.3g}" for t in torch.as_tensor(v).flatten()) + ")"
