"""One click -> many views -> SAM in each -> 2D masks ready for lifting (engine/masks/galp.py).

1. The clicked pixel's 3D point comes from the rendered depth (`pick.click_point`).
2. `num_views` cameras orbit that point at the clicking camera's distance, spread over azimuth and a few
   elevations, all looking at it.
3. The point is projected into each view; a view is skipped when the point falls outside the image or is
   hidden (its depth lies behind the rendered surface at that pixel by more than `depth_tolerance`).
4. Each kept view is rendered and SAM is prompted with the projected point; the clicking view itself is kept
   too (prompted at the click).
The result is a list of `MaskViews` (one per image size) plus what was skipped, for `galp` or `vote`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras, framing_radius, orbit_cameras
from ..render import render
from ..render.images import to_uint8
from ..scene import GaussianScene
from .pick import click_point, pixel_contributions
from .sam import SamSegmenter
from .views_io import MaskViews


@dataclass
class MultiViewConfig:
    """How the views around a click are chosen and rendered."""

    num_views: int = 12
    """Orbit views sampled around the clicked point (hidden ones are skipped)."""
    size: int = 384
    """Width and height of the rendered orbit views, in pixels."""
    elevations: tuple[float, ...] = (-10.0, 20.0, 45.0)
    """Elevation rings (degrees above the horizontal plane) the views alternate between."""
    fov_y_deg: float = 45.0
    depth_tolerance: float = 0.03
    """A view sees the point when its depth is at most this fraction (of the distance) behind the surface."""
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour of the renders SAM sees."""


@dataclass
class ClickViews:
    point: Tensor  # [3] the clicked 3D point
    views: list[MaskViews]  # the SAM masks, one batch per image size (the clicking view first)
    kept: list[int]  # indices of the orbit views that saw the point
    skipped: list[int] = field(default_factory=list)  # orbit views where it was hidden or off-image
    scores: list[float] = field(default_factory=list)  # SAM's score per mask, in the order of `views`


def scene_camera(
    scene: GaussianScene, azimuth: float, elevation: float, *, width: int, height: int, fov_y_deg: float = 45.0,
    up=(0.0, 0.0, 1.0),
) -> Cameras:
    """One orbit camera looking at the centre of the scene's bounding box and framing it."""
    lo, hi = scene.bounding_box(quantile=0.01)
    radius = framing_radius(float((hi - lo).norm() / 2), fov_y_deg)
    return orbit_cameras((lo + hi) / 2, radius, [azimuth], elevation, width=width, height=height,
                         fov_y_deg=fov_y_deg, up=up)


def views_around(point: Tensor, distance: float, cfg: MultiViewConfig) -> Cameras:
    """`cfg.num_views` cameras on a sphere of radius `distance` around `point`, all looking at it."""
    az, el = [], []
    rings = len(cfg.elevations)
    for i in range(cfg.num_views):
        az.append(360.0 * i / cfg.num_views + 30.0 * (i % rings))
        el.append(cfg.elevations[i % rings])
    return orbit_cameras(point, distance, az, el, width=cfg.size, height=cfg.size, fov_y_deg=cfg.fov_y_deg,
                         up=cfg.up)


def point_visibility(scene: GaussianScene, cameras: Cameras, point: Tensor, tolerance: float) -> tuple[Tensor, Tensor]:
    """(pixels [C, 2], visible [C] bool): where `point` projects in each camera and whether it is seen there
    (inside the image, in front, and not more than `tolerance` x distance behind the rendered depth)."""
    pixels, visible = [], []
    p = point.float().cpu()
    for c in range(len(cameras)):
        cam = cameras[c]
        viewmat, K = cam.viewmats[0].float().cpu(), cam.Ks[0].float().cpu()
        pc = viewmat[:3, :3] @ p + viewmat[:3, 3]
        z = float(pc[2])
        x = float(K[0, 0] * pc[0] / max(z, 1e-9) + K[0, 2])
        y = float(K[1, 1] * pc[1] / max(z, 1e-9) + K[1, 2])
        pixels.append([x, y])
        ok = z > 0 and 0 <= x < cam.width and 0 <= y < cam.height
        if ok:
            idx, weight = pixel_contributions(scene, cam, x, y)
            alpha = float(weight.sum()) if idx.numel() else 0.0
            if alpha < 0.5:
                ok = False
            else:
                means = scene.means.detach().float().cpu()[idx]
                depth = float((weight * (means @ viewmat[2, :3] + viewmat[2, 3])).sum()) / alpha
                ok = z <= depth + tolerance * z
        visible.append(ok)
    return torch.tensor(pixels), torch.tensor(visible)


def render_uint8(scene: GaussianScene, cameras: Cameras, background) -> list[np.ndarray]:
    """RGB renders [H, W, 3] uint8, one view at a time (bounded memory)."""
    images = []
    for c in range(len(cameras)):
        with torch.no_grad():
            rgb = render(scene, cameras[c], background=torch.tensor(background)).rgb[0]
        images.append(to_uint8(rgb))
    return images


def segment_click(
    scene: GaussianScene,
    segmenter: SamSegmenter,
    camera: Cameras,
    x: float,
    y: float,
    config: MultiViewConfig | None = None,
    on_view=None,
) -> ClickViews:
    """SAM masks of the part under pixel (x, y) of `camera`, from that view and from orbit views around it.
    Raises pick.NothingHit when the click lands on empty space. `on_view(done, total)` is called after each
    view is segmented (a progress bar; raising from it stops the work)."""
    cfg = config or MultiViewConfig()
    point = click_point(scene, camera, x, y)
    distance = float((camera.centers[0].float().cpu() - point).norm())
    orbit = views_around(point, distance, cfg)
    pixels, visible = point_visibility(scene, orbit, point, cfg.depth_tolerance)
    kept = visible.nonzero().flatten().tolist()
    skipped = [i for i in range(len(orbit)) if i not in kept]

    views, scores = [], []
    total = 1 + len(kept)
    first = segmenter.segment(render_uint8(scene, camera, cfg.background)[0], points=[[x, y]])
    if on_view is not None:
        on_view(1, total)
    views.append(MaskViews(camera, torch.from_numpy(first.mask).float()[None]))
    scores.append(first.score)
    if kept:
        cams = Cameras(orbit.viewmats[kept], orbit.Ks[kept], orbit.width, orbit.height)
        masks = []
        for i, pixel in enumerate(pixels[kept]):
            image = render_uint8(scene, cams[i], cfg.background)[0]
            result = segmenter.segment(image, points=[pixel.tolist()])
            masks.append(torch.from_numpy(result.mask).float())
            scores.append(result.score)
            if on_view is not None:
                on_view(2 + i, total)
        batch = MaskViews(cams, torch.stack(masks))
        if (cams.width, cams.height) == (camera.width, camera.height):
            views = [MaskViews(Cameras.concat([camera, cams]), torch.cat([views[0].masks, batch.masks]))]
        else:
            views.append(batch)
    return ClickViews(point, views, kept, skipped, scores)


def parse_click(spec: str) -> tuple[float, float, float, float]:
    """'AZ,EL,X,Y' -> floats (the CLI's --click: a framing orbit view at azimuth/elevation and a pixel)."""
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"--click must be AZ,EL,X,Y (degrees, degrees, pixel x, pixel y), got {spec!r}")
    return values[0], values[1], values[2], values[3]

