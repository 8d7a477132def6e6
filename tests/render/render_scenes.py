"""Small hand-built scenes and cameras shared by the renderer tests."""

from __future__ import annotations

import math

import torch

from engine.camera import Cameras
from engine.scene import GaussianScene, rgb_to_sh0


def axis_camera(width: int, height: int, focal: float, *, cx: float | None = None, cy: float | None = None,
                dtype=torch.float64) -> Cameras:
    """One camera at the origin looking along +z (identity world-to-camera)."""
    K = torch.tensor(
        [[focal, 0.0, width / 2 if cx is None else cx], [0.0, focal, height / 2 if cy is None else cy], [0.0, 0.0, 1.0]],
        dtype=dtype,
    )
    return Cameras(torch.eye(4, dtype=dtype)[None], K[None], width, height)


def gaussians(
    means, stds, opacities, rgbs, *, angles_z=None, sh_degree: int = 0, dtype=torch.float64
) -> GaussianScene:
    """A scene from activated values: centres [N,3], per-axis std [N,3], opacities [N] in (0,1), colours [N,3];
    optional rotation about the z axis (radians) per Gaussian."""
    means = torch.as_tensor(means, dtype=dtype).reshape(-1, 3)
    n = len(means)
    angles = torch.zeros(n, dtype=dtype) if angles_z is None else torch.as_tensor(angles_z, dtype=dtype)
    quats = torch.stack([torch.cos(angles / 2), torch.zeros(n, dtype=dtype), torch.zeros(n, dtype=dtype),
                         torch.sin(angles / 2)], dim=-1)
    scales = torch.log(torch.as_tensor(stds, dtype=dtype).reshape(n, 3))
    opac = torch.logit(torch.as_tensor(opacities, dtype=dtype).reshape(n))
    sh0 = rgb_to_sh0(torch.as_tensor(rgbs, dtype=dtype).reshape(n, 1, 3))
    k = (sh_degree + 1) ** 2 - 1
    return GaussianScene(means, quats, scales, opac, sh0, torch.zeros(n, k, 3, dtype=dtype))


def with_grad(scene: GaussianScene) -> tuple[GaussianScene, dict[str, torch.Tensor]]:
    """A copy of the scene whose raw parameters are leaf tensors requiring grad (and those leaves)."""
    leaves = {name: value.detach().clone().requires_grad_(True) for name, value in scene.items()}
    return GaussianScene(**leaves), leaves


def random_view_scene(num: int, *, seed: int, sh_degree: int = 0, dtype=torch.float64,
                      scale_range=(0.03, 0.25), opacity_range=(0.05, 0.95)) -> GaussianScene:
    """Random Gaussians in front of `orbit_pair` cameras (a unit-ish cube around the origin)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(num, 3, generator=g, dtype=dtype) * 2 - 1)
    quats = torch.randn(num, 4, generator=g, dtype=dtype)
    lo, hi = scale_range
    scales = torch.log(lo + (hi - lo) * torch.rand(num, 3, generator=g, dtype=dtype))
    lo, hi = opacity_range
    opac = torch.logit(lo + (hi - lo) * torch.rand(num, generator=g, dtype=dtype))
    sh0 = rgb_to_sh0(torch.rand(num, 1, 3, generator=g, dtype=dtype))
    k = (sh_degree + 1) ** 2 - 1
    shN = 0.3 * torch.randn(num, k, 3, generator=g, dtype=dtype)
    return GaussianScene(means, quats, scales, opac, sh0, shN)


def orbit_pair(width: int, height: int, *, dtype=torch.float64, distance: float = 4.0) -> Cameras:
    """Two cameras looking at the origin from different sides."""
    from engine.camera import orbit_cameras

    fov = 2 * math.degrees(math.atan(1.3 / distance))
    return orbit_cameras(torch.zeros(3), distance, [20.0, 145.0], [15.0, -30.0], width=width, height=height,
                         fov_y_deg=fov).to(dtype=dtype)
