"""Screen-space and volume selections, each returning a soft mask [N] in [0, 1].

Screen-space tools (brush, rectangle, any 2D region) come in two flavours:
- visible-only (depth-aware): a Gaussian's weight is the share of its compositing weight in this view that
  falls inside the region, so hidden Gaussians get nothing and a Gaussian half inside gets 0.5;
- see-through: every Gaussian whose projected centre lies inside the region (in front of the camera) gets 1,
  whatever is in front of it.
Volume tools select by centre position: inside a sphere or an (optionally rotated) box, with an optional
feather (a linear ramp of that width just outside the surface) for soft edges.
Combine, grow or clean the results with engine/masks/ops.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from .compositing import compositing_weights

# A Gaussian whose total compositing weight in the view is below this counts as not visible there.
MIN_VISIBILITY = 0.01


def _single(camera: Cameras) -> Cameras:
    if len(camera) != 1:
        raise ValueError(f"expected one camera, got {len(camera)}")
    return camera


def region_select(
    scene: GaussianScene, camera: Cameras, region: Tensor, *, visible_only: bool = True
) -> Tensor:
    """Mask [N] of the Gaussians inside a 2D region (bool or soft [H, W], the camera's size) of one view."""
    camera = _single(camera)
    region = torch.as_tensor(region).float().cpu()
    if tuple(region.shape) != (camera.height, camera.width):
        raise ValueError(f"region must be [{camera.height}, {camera.width}] like the camera, got {list(region.shape)}")
    if not visible_only:
        x, y, in_front = _project_centres(scene, camera)
        xi, yi = x.floor().long(), y.floor().long()
        on_image = in_front & (xi >= 0) & (xi < camera.width) & (yi >= 0) & (yi < camera.height)
        out = torch.zeros(len(scene))
        out[on_image] = region[yi[on_image], xi[on_image]].clamp(0, 1)
        return out
    vw = compositing_weights(scene, camera)
    inside = vw.splat(region[None, :, :, None])[0, :, 0]
    total = vw.totals()[0]
    share = torch.where(total >= MIN_VISIBILITY, inside / total.clamp_min(1e-12), torch.zeros_like(total))
    return share.clamp(0.0, 1.0)


def brush(
    scene: GaussianScene, camera: Cameras, points, radius: float, *, visible_only: bool = True
) -> Tensor:
    """Mask [N] under a round brush of `radius` pixels dragged through `points` [M, 2] (x, y pixels)."""
    camera = _single(camera)
    pts = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
    if radius <= 0:
        raise ValueError(f"brush radius must be positive, got {radius}")
    ys, xs = torch.meshgrid(torch.arange(camera.height) + 0.5, torch.arange(camera.width) + 0.5, indexing="ij")
    region = torch.zeros(camera.height, camera.width, dtype=torch.bool)
    for p in _densify_stroke(pts, radius):
        region |= (xs - p[0]) ** 2 + (ys - p[1]) ** 2 <= radius * radius
    return region_select(scene, camera, region, visible_only=visible_only)


def rectangle(
    scene: GaussianScene, camera: Cameras, x0: float, y0: float, x1: float, y1: float, *, visible_only: bool = True
) -> Tensor:
    """Mask [N] inside the pixel rectangle with corners (x0, y0) and (x1, y1) (any order)."""
    camera = _single(camera)
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    ys, xs = torch.meshgrid(torch.arange(camera.height) + 0.5, torch.arange(camera.width) + 0.5, indexing="ij")
    region = (xs >= xa) & (xs <= xb) & (ys >= ya) & (ys <= yb)
    return region_select(scene, camera, region, visible_only=visible_only)


def sphere(scene: GaussianScene, center, radius: float, *, feather: float = 0.0) -> Tensor:
    """Mask [N] of the Gaussians whose centre lies within `radius` of `center` [3]."""
    if radius <= 0:
        raise ValueError(f"sphere radius must be positive, got {radius}")
    c = torch.as_tensor(center, dtype=torch.float32).reshape(3)
    d = (scene.means.detach().float().cpu() - c).norm(dim=-1)
    return _ramp(d - radius, feather)


def box(scene: GaussianScene, center, half_extents, *, rotation=None, feather: float = 0.0) -> Tensor:
    """Mask [N] of the Gaussians whose centre lies inside a box: `center` [3], `half_extents` [3] along the
    box axes, `rotation` [3, 3] whose columns are the box axes in world space (default: axis-aligned)."""
    c = torch.as_tensor(center, dtype=torch.float32).reshape(3)
    h = torch.as_tensor(half_extents, dtype=torch.float32).reshape(3)
    if (h <= 0).any():
        raise ValueError(f"box half extents must be positive, got {h.tolist()}")
    R = torch.eye(3) if rotation is None else torch.as_tensor(rotation, dtype=torch.float32).reshape(3, 3)
    local = (scene.means.detach().float().cpu() - c) @ R  # coordinates along the box axes
    outside = (local.abs() - h).clamp_min(0).norm(dim=-1)  # distance to the box (0 inside)
    return _ramp(outside, feather)


def _ramp(distance: Tensor, feather: float) -> Tensor:
    """1 for distance <= 0, falling linearly to 0 at `feather` (a hard cut when feather is 0)."""
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    if feather == 0:
        return (distance <= 0).float()
    return (1.0 - distance / feather).clamp(0.0, 1.0)


def _project_centres(scene: GaussianScene, camera: Cameras) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel coordinates (x, y) [N] of the centres and whether they lie in front of the camera [N]."""
    viewmat, K = camera.viewmats[0].float().cpu(), camera.Ks[0].float().cpu()
    pc = scene.means.detach().float().cpu() @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = pc[:, 2]
    safe = torch.where(z > 1e-6, z, torch.ones_like(z))
    x = K[0, 0] * pc[:, 0] / safe + K[0, 2]
    y = K[1, 1] * pc[:, 1] / safe + K[1, 2]
    return x, y, z > 0.01


def _densify_stroke(points: Tensor, radius: float) -> Tensor:
    """Insert points along the stroke so consecutive dabs are at most radius / 2 apart."""
    if len(points) < 2:
        return points
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:]):
        n = max(1, int(torch.ceil((b - a).norm() / (0.5 * radius))))
        t = torch.linspace(0, 1, n + 1)[1:, None]
        out.append(a + t * (b - a))
    return torch.cat(out)
