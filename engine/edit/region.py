"""The edit region: the part of space an edit may change, fixed for the whole job.

An edit that re-renders its 2D mask from where the masked Gaussians are *now* lets the part spread (the mask
grows with it) or vanish (prior removal deletes it), and Gaussians that drift or grow cover what they should
not. The region is computed once, before the first step, from the user's selection:

- the selected Gaussians' centres dilated by 3 sigma (their median size) plus `margin` (world units);
- plus any user volumes (boxes), e.g. the empty space above a head where a hat should appear.

It is stored as a boolean voxel grid (`cell` world units per voxel) so that "is this point inside?" is one
lookup per point whatever the part's shape, and projected to 2D by rendering one opaque round Gaussian per
surface voxel: the projected mask of a view is that render's alpha, a soft silhouette of the region that
does not depend on what the edit has done so far.

`plan_region` fixes the region and the orbit that frames it before an edit's first step (evaluations call it
too, to count floaters the way the edit bounded them); `seed_boxes` fills the empty space of the user's boxes
with faint Gaussians a shape edit can grow into.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras
from ..optimize.orbit import Orbit
from ..render import render
from ..scene import GaussianScene
from .views import part_orbit

if TYPE_CHECKING:
    from .config import EditConfig

MAX_VOXELS_PER_AXIS = 64
"""Grid resolution cap: the finest grid covers the region's box with at most this many cells per axis."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of world space (a user volume of the edit region)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.lo) != 3 or len(self.hi) != 3 or not all(a < b for a, b in zip(self.lo, self.hi)):
            raise ValueError(f"a region box needs lo < hi on every axis, got lo={self.lo}, hi={self.hi}")
        if not all(math.isfinite(v) for v in (*self.lo, *self.hi)):
            raise ValueError("a region box must have finite corners")


class EditRegion:
    """A boolean voxel grid over world space: where an edit may put Gaussians and change pixels."""

    def __init__(self, origin: Tensor, cell: float, occupied: Tensor) -> None:
        self.origin = origin.double().cpu()  # [3] world position of voxel (0, 0, 0)'s lower corner
        self.cell = float(cell)  # voxel edge length
        self.occupied = occupied.bool().cpu()  # [X, Y, Z]
        self._proxy: GaussianScene | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def around(
        cls,
        scene: GaussianScene,
        selected: Tensor,  # [N] bool: the Gaussians the edit optimizes
        *,
        margin: float,
        boxes: tuple[Box, ...] = (),
    ) -> "EditRegion":
        """Points within (3 sigma + margin) of a selected centre (sigma: the selection's median largest axis),
        united with `boxes`. One Euclidean distance transform on the grid, so it costs the same for any part."""
        from scipy.ndimage import distance_transform_edt

        means = scene.means.detach().double().cpu()[selected.cpu()]
        if means.shape[0] == 0 and not boxes:
            raise ValueError("the edit region is empty: select some Gaussians or give a region volume")
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"the region margin must be a finite number >= 0, got {margin}")
        sigma = torch.exp(scene.scales.detach().double().cpu()[selected.cpu()]).amax(dim=-1)
        reach = 3.0 * float(sigma.median()) + float(margin) if means.shape[0] else 0.0
        lows = [means.amin(dim=0) - reach] if means.shape[0] else []
        highs = [means.amax(dim=0) + reach] if means.shape[0] else []
        for box in boxes:
            lows.append(torch.tensor(box.lo, dtype=torch.float64))
            highs.append(torch.tensor(box.hi, dtype=torch.float64))
        lo = torch.stack(lows).amin(dim=0)
        hi = torch.stack(highs).amax(dim=0)
        span = float((hi - lo).max())
        cell = max(span / MAX_VOXELS_PER_AXIS, 1e-6)
        lo = lo - cell  # one empty voxel of border, so the region's surface is inside the grid
        shape = tuple((torch.ceil((hi - lo) / cell).long() + 2).tolist())
        occupied = torch.zeros(shape, dtype=torch.bool)
        if means.shape[0]:
            seed = np.zeros(shape, dtype=bool)
            idx = torch.floor((means - lo) / cell).long().numpy()
            seed[idx[:, 0], idx[:, 1], idx[:, 2]] = True
            distance = distance_transform_edt(~seed) * cell  # voxel centre to the nearest seeded voxel centre
            occupied |= torch.from_numpy(distance <= reach + 0.5 * math.sqrt(3.0) * cell)
        for box in boxes:
            a = torch.floor((torch.tensor(box.lo, dtype=torch.float64) - lo) / cell).long().clamp(min=0)
            b = torch.ceil((torch.tensor(box.hi, dtype=torch.float64) - lo) / cell).long()
            occupied[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
        return cls(lo, cell, occupied)

    # ------------------------------------------------------------------ queries
    @property
    def num_voxels(self) -> int:
        return int(self.occupied.sum())

    def contains(self, points: Tensor) -> Tensor:  # [N, 3] -> [N] bool (on the points' device)
        """True for points inside an occupied voxel."""
        idx = torch.floor((points.detach().double().cpu() - self.origin) / self.cell).long()
        size = torch.tensor(self.occupied.shape)
        valid = ((idx >= 0) & (idx < size)).all(dim=-1)
        out = torch.zeros(points.shape[0], dtype=torch.bool)
        ok = idx[valid]
        out[valid] = self.occupied[ok[:, 0], ok[:, 1], ok[:, 2]]
        return out.to(points.device)

    def voxel_centres(self) -> Tensor:  # [V, 3] float64
        return self.origin + (torch.nonzero(self.occupied).double() + 0.5) * self.cell

    def surface_voxel_centres(self) -> Tensor:  # [S, 3] float64
        """Occupied voxels with an empty face neighbour: enough to draw the region's silhouette."""
        grid = self.occupied[None, None].float()
        interior = -torch.nn.functional.max_pool3d(-grid, 3, stride=1, padding=1)[0, 0] > 0
        return self.origin + (torch.nonzero(self.occupied & ~interior).double() + 0.5) * self.cell

    def empty_voxel_centres(self, scene: GaussianScene) -> Tensor:  # [E, 3] float64
        """Centres of occupied voxels that hold no Gaussian centre of `scene` and have no occupied-by-scene
        neighbour: the empty space of the region (where an "add" edit has to create Gaussians)."""
        filled = torch.zeros_like(self.occupied)
        idx = torch.floor((scene.means.detach().double().cpu() - self.origin) / self.cell).long()
        size = torch.tensor(self.occupied.shape)
        ok = idx[((idx >= 0) & (idx < size)).all(dim=-1)]
        filled[ok[:, 0], ok[:, 1], ok[:, 2]] = True
        near = torch.nn.functional.max_pool3d(filled[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
        empty = self.occupied & ~near
        return self.origin + (torch.nonzero(empty).double() + 0.5) * self.cell

    def proxy(self) -> GaussianScene:
        """One opaque round Gaussian per occupied voxel (sigma = 0.6 cell), for projecting the region."""
        if self._proxy is None:
            centres = self.surface_voxel_centres().float()
            n = centres.shape[0]
            self._proxy = GaussianScene.create(
                means=centres,
                quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(n, 4).clone(),
                scales=torch.full((n, 3), math.log(0.6 * self.cell)),
                opacities=torch.full((n,), 6.0),
                sh0=torch.zeros(n, 1, 3),
                shN=torch.zeros(n, 0, 3),
            )
        return self._proxy

    def project(self, cameras: Cameras, *, device=None, backend: str = "auto") -> Tensor:
        """[C, H, W, 1] soft silhouette of the region in each view (alpha of its proxy, no occlusion)."""
        proxy = self.proxy()
        if device is not None:
            proxy = proxy.to(device)
        cams = cameras.to(proxy.device, proxy.dtype)
        with torch.no_grad():
            out = render(proxy, cams, colors=torch.ones(len(cams), len(proxy), 1, device=proxy.device),
                         background=torch.zeros(1, device=proxy.device), backend=backend)
        return out.alpha.clamp(0.0, 1.0) if out.alpha.dim() == 4 else out.alpha[..., None].clamp(0.0, 1.0)


def seed_boxes(region: EditRegion, scene: GaussianScene, config: EditConfig) -> GaussianScene | None:
    """Faint round Gaussians on the empty voxels of the region's boxes (evenly thinned to `max_seeds`), grey,
    sized to touch their neighbours: raw material for an edit that adds something where nothing was."""
    if not config.region_boxes or config.edit == "appearance" or config.max_seeds <= 0:
        return None
    centres = region.empty_voxel_centres(scene)
    if centres.shape[0] == 0:
        return None
    in_box = torch.zeros(centres.shape[0], dtype=torch.bool)
    for box in config.region_boxes:
        lo, hi = torch.tensor(box.lo, dtype=torch.float64), torch.tensor(box.hi, dtype=torch.float64)
        in_box |= ((centres >= lo) & (centres <= hi)).all(dim=-1)
    centres = centres[in_box]
    stride = 1
    while centres.shape[0] > config.max_seeds * stride**3:
        stride += 1
    if stride > 1:  # keep every stride-th voxel along each axis
        idx = torch.floor((centres - region.origin) / region.cell).long()
        centres = centres[(idx % stride == 0).all(dim=-1)]
    n = centres.shape[0]
    if n == 0:
        return None
    dtype, device = scene.dtype, scene.device
    k = scene.shN.shape[1]
    return GaussianScene.create(
        means=centres.to(device, dtype),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype, device=device).expand(n, 4).clone(),
        scales=torch.full((n, 3), math.log(0.6 * stride * region.cell), dtype=dtype, device=device),
        opacities=torch.full((n,), math.log(config.seed_opacity / (1 - config.seed_opacity)), dtype=dtype,
                             device=device),
        sh0=torch.zeros(n, 1, 3, dtype=dtype, device=device),
        shN=torch.zeros(n, k, 3, dtype=dtype, device=device),
    )


def plan_region(scene: GaussianScene, mask: Tensor, config: EditConfig) -> tuple[EditRegion, Orbit]:
    """The region an edit of `scene` with `mask` may change, and the orbit framing it: what `run_edit` fixes
    before its first step (and what evaluations must use to count floaters the same way)."""
    orbit = part_orbit(scene, mask, config)
    region = EditRegion.around(scene, mask > config.mask_threshold, margin=config.region_margin * orbit.half_extent,
                               boxes=tuple(config.region_boxes))
    return region, orbit
