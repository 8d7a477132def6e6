"""Where an edit is measured: one ring of held-out views around the part, and the renders taken on it.

`held_out_cameras` is the one evaluation ring, for the batch and `evaluate` (report.py) and for the ground-truth
bench (ground_truth.py): views at azimuths 17° + 97°·i (spread all round for any count), cycling through four
(elevation, distance) pairs chosen off the edit's sampling so a result that only fits its training views does
not pass: elevations -25° and 72° lie outside the edit's [-10°, 60°] (5° and 35° inside it, never its preview
ring's 25°), and distances 0.85x, 1.3x and 2.0x of the ring's middle distance — 1.1x, 1.7x and 2.6x the part's
framing radius, where the edit samples 1.0x-1.6x. Twelve views see every pair three times; fewer than four
views do not see all four elevations.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..camera import Cameras, orbit_cameras

FIRST_AZIMUTH_DEG = 17.0
AZIMUTH_STEP_DEG = 97.0
ELEVATIONS_AND_DISTANCES = ((-25.0, 1.3), (5.0, 0.85), (35.0, 2.0), (72.0, 1.3))  # (degrees, x distance)
HELD_OUT_VIEWS = 12
VISIBLE_ALPHA = 1.0 / 255.0  # a part "is seen" at a pixel where it contributes more than this


def held_out_cameras(center: Tensor, distance: float, *, resolution: int, views: int = HELD_OUT_VIEWS,
                     fov_y_deg: float = 45.0, up=(0.0, 0.0, 1.0)) -> Cameras:
    """`views` square cameras of `resolution` px looking at `center` ([3]) from the ring of the module docstring;
    `distance` is the ring's middle distance (the edit's framing radius times the middle of its range)."""
    cams = []
    for i in range(views):
        elevation, factor = ELEVATIONS_AND_DISTANCES[i % len(ELEVATIONS_AND_DISTANCES)]
        cams.append(orbit_cameras(center, distance * factor,
                                  torch.tensor([FIRST_AZIMUTH_DEG + AZIMUTH_STEP_DEG * i], dtype=torch.float64),
                                  torch.tensor([elevation], dtype=torch.float64), width=resolution,
                                  height=resolution, fov_y_deg=fov_y_deg, up=up))
    return Cameras.concat(cams)


def part_cameras(scene, mask: Tensor, config, *, views: int, resolution: int) -> Cameras:
    """The held-out ring around the masked part of `scene` ([N] weights), framed as the edit with `config` (an
    EditConfig: threshold, region boxes, field of view, distance range, up) frames it."""
    from ..edit import part_orbit

    orbit = part_orbit(scene.detach(), mask.to(scene.device), config)
    middle = orbit.radius * sum(orbit.radius_range) / 2
    return held_out_cameras(orbit.center, middle, resolution=resolution, views=views, fov_y_deg=orbit.fov_y_deg,
                            up=orbit.up)


def render_views(scene, cameras: Cameras, background=(1.0, 1.0, 1.0), *, backend: str = "auto") -> Tensor:
    """[V, H, W, 3] colour renders in [0, 1]."""
    from ..render import render

    with torch.no_grad():
        return render(scene.detach(), cameras, background=background, backend=backend).rgb.clamp(0, 1)


def coverage(scene, weights: Tensor, cameras: Cameras, *, backend: str = "auto") -> Tensor:
    """[V, H, W, 1] per-Gaussian `weights` ([N], bool or float) composited like a colour (occlusion included):
    how much of each pixel those Gaussians make."""
    from ..render import render

    colors = weights.to(device=scene.device, dtype=scene.dtype)[:, None]
    with torch.no_grad():
        return render(scene.detach(), cameras, colors=colors, backend=backend).rgb.clamp(0, 1)


def seen(scene, rows: Tensor, cameras: Cameras, *, backend: str = "auto") -> Tensor:
    """[V, H, W] bool: where the Gaussians in `rows` ([N] bool) are visible (contribute > VISIBLE_ALPHA)."""
    return coverage(scene, rows, cameras, backend=backend)[..., 0] > VISIBLE_ALPHA
