"""How good an edit is, measured against the ideal result on views the edit never saw.

Given the input scene, the selection, the edited result and the ground-truth target scene:

- **held-out views** (`held_out_cameras`): orbit cameras around the part at azimuths, elevations and distances
  chosen off the edit's sampling (elevations below and above its range, distances nearer and farther), so a
  result that only fits its training views does not pass;
- **part region** of a view: the union of where the selected part is visible in the input and where the
  target's changed part is visible in the target (occlusion included), i.e. every pixel the edit was meant to
  change; **PSNR inside** and **PSNR outside** that region against the target's render;
- **spill**: the fraction of outside pixels whose colour differs from the target by more than 2/255 in any
  channel (what the user sees as "the edit leaked");
- **floaters**: Gaussians of the result that the edit optimized or created, with opacity > 0.05, whose centres
  lie outside the edit region (engine/edit_region.py) — Gaussians that went where no edit was asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import Cameras, orbit_cameras
from .edit.region import EditRegion
from .render import render
from .scene import GaussianScene

SPILL_TOLERANCE = 2.0 / 255.0
FLOATER_OPACITY = 0.05
VISIBLE_ALPHA = 1.0 / 255.0


def held_out_cameras(center: Tensor, radius: float, *, resolution: int, fov_y_deg: float = 45.0,
                     up=(0.0, 0.0, 1.0)) -> Cameras:
    """12 views around `center`: elevations -25, 5, 35 and 72 degrees, distances 0.85x, 1.3x and 2.0x
    `radius` (the edit samples elevations in [-10, 60] and distances in [1.0, 1.6]x), azimuths offset by
    17 degrees from any round number."""
    az, el, dist = [], [], []
    for i, (e, d) in enumerate([(-25, 1.3), (5, 0.85), (35, 2.0), (72, 1.3)] * 3):
        az.append(17.0 + 97.0 * i)
        el.append(float(e))
        dist.append(float(d))
    cams = [orbit_cameras(center, radius * d, torch.tensor([a], dtype=torch.float64),
                          torch.tensor([e], dtype=torch.float64), width=resolution, height=resolution,
                          fov_y_deg=fov_y_deg, up=up) for a, e, d in zip(az, el, dist)]
    return Cameras.concat(cams)


def _visible(scene: GaussianScene, rows: Tensor, cameras: Cameras, backend: str) -> Tensor:  # [C, H, W]
    """Where the Gaussians in `rows` contribute to the composited image (occlusion included)."""
    indicator = rows.to(scene.dtype)[:, None]
    with torch.no_grad():
        return render(scene, cameras, colors=indicator, backend=backend).rgb[..., 0] > VISIBLE_ALPHA


@dataclass
class EditQuality:
    psnr_inside: float
    psnr_outside: float
    spill: float  # fraction of outside pixels off by > 2/255
    floaters: int
    gaussians_before: int
    gaussians_after: int

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _psnr(err2: Tensor, where: Tensor) -> float:
    n = int(where.sum())
    if n == 0:
        return float("inf")
    mse = float(err2[where].mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))


def edit_quality(
    source: GaussianScene,
    selected: Tensor,  # [N_source] bool: the part the edit was given
    result: GaussianScene,
    result_edited: Tensor,  # [N_result] bool: rows the edit optimized or created
    target: GaussianScene,
    target_changed: Tensor,  # [N_target] bool: the target's rows that make up the edited part
    region: EditRegion,
    cameras: Cameras,
    *,
    background=(1.0, 1.0, 1.0),
    backend: str = "auto",
) -> EditQuality:
    """The metrics of the module docstring on `cameras`."""
    with torch.no_grad():
        got = render(result, cameras, background=background, backend=backend).rgb.clamp(0, 1)
        want = render(target, cameras, background=background, backend=backend).rgb.clamp(0, 1)
    part = _visible(source, selected, cameras, backend)
    if bool(target_changed.any()):
        part |= _visible(target, target_changed, cameras, backend)
    err = (got - want).abs()
    err2 = err.pow(2).mean(dim=-1)
    outside = ~part
    spill = float((err.amax(dim=-1) > SPILL_TOLERANCE)[outside].float().mean()) if bool(outside.any()) else 0.0
    edited = result_edited & (torch.sigmoid(result.opacities.detach()) > FLOATER_OPACITY)
    floaters = int((edited & ~region.contains(result.means)).sum())
    return EditQuality(_psnr(err2, part), _psnr(err2, outside), spill, floaters, len(source), len(result))
