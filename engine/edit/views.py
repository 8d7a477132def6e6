"""Where an edit looks from: the orbit that frames the masked part, and views that actually see it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..camera import Cameras
from ..optimize.orbit import Orbit
from ..render import render
from ..render.cpu import draws_compiled
from ..render.part_cover import part_cover
from ..scene import GaussianScene

if TYPE_CHECKING:
    from .config import EditConfig


def part_orbit(scene: GaussianScene, mask: Tensor, config: EditConfig) -> Orbit:  # mask: [N] weights
    """Cameras orbiting the masked part at a distance that frames it. Centre: the mask-weighted mean of the
    selected centres; extent: their spread (robust to a few stray Gaussians), padded by their own sizes. Region
    boxes are framed too (an added hat is seen): each box's eight corners and centre join the points, each at
    the mean weight x max(1, selected / 90), so the nine together weigh about a tenth of a large part."""
    sel = mask > config.mask_threshold
    means = scene.means.detach()[sel].double()
    w = mask[sel].double().to(means.device)
    for box in config.region_boxes:
        lo, hi = torch.tensor(box.lo, dtype=torch.float64), torch.tensor(box.hi, dtype=torch.float64)
        corners = torch.stack([torch.where(torch.tensor([(i >> k) & 1 for k in range(3)], dtype=torch.bool), hi, lo)
                               for i in range(8)] + [(lo + hi) / 2]).to(means.device)
        means = torch.cat([means, corners])
        w = torch.cat([w, torch.full((9,), float(w.mean()) if w.numel() else 1.0, dtype=torch.float64,
                                     device=means.device) * max(1.0, sel.sum().item() / 90.0)])
    center = (means * w[:, None]).sum(0) / w.sum()
    sizes = torch.exp(scene.scales.detach()[sel]).max(dim=-1).values
    return Orbit.around(means, center, sizes, fov_y_deg=config.fov_y_deg, elevation_range=config.elevation_range,
                        radius_range=config.radius_range, up=config.up, resolution=config.resolution)


class ViewPicker:
    """Orbit views that see the part: candidates whose visible share of the part's silhouette is below
    `min_fraction` are redrawn (up to `tries` times; then the best candidate is kept).

    Visibility is measured on the *original* scene at 48 px: the part's silhouette alone vs the part's
    indicator composited behind everything else (occlusion included). A part with no selected Gaussians (a
    region made only of boxes) accepts every view.

    On the CPU renderer the indicator render is engine/render/part_cover.py's: the whole scene's picture bit for
    bit (the same views are chosen), drawn from the rows in front of the part in its tiles only (at 1.2M
    Gaussians whole-scene renders made 32 candidates cost ~15 s).
    """

    SIZE = 48
    CHUNK = 1  # cameras per whole-scene visibility render (a GPU's, or a CPU dtype part_cover does not draw): each
    # holds projections of every row (~0.4 GB per camera at 3M Gaussians)

    def __init__(self, orbit: Orbit, original: GaussianScene, selected: Tensor, min_fraction: float,
                 backend: str, tries: int = 8) -> None:
        self.orbit, self.min_fraction, self.tries, self.backend = orbit, float(min_fraction), tries, backend
        self.scene = original
        self.selected, self.indicator = selected, selected.to(original.dtype)[:, None]
        self.part = original.subset(selected)
        self.cull = draws_compiled(original, backend)  # part_cover draws the same picture

    def visible_fraction(self, cameras: Cameras) -> Tensor:  # [C]
        """Whole-scene renders (a GPU's) go CHUNK cameras at a time: a render holds per-camera projections of
        every row (at 1.2M Gaussians a 32-camera batch held ~2 GB); part_cover draws one camera at a time."""
        if len(self.part) == 0:
            return torch.ones(len(cameras))
        small = cameras.with_size(self.SIZE, self.SIZE).to(self.scene.device, self.scene.dtype)
        with torch.no_grad():
            alone = render(self.part, small, colors=torch.ones_like(self.indicator[: len(self.part)]),
                           backend=self.backend).rgb[..., 0]
            seen = part_cover(self.scene, self.selected, small) if self.cull else torch.cat([
                render(self.scene, small[i : i + self.CHUNK], colors=self.indicator, backend=self.backend).rgb[..., 0]
                for i in range(0, len(small), self.CHUNK)])
        area = alone.flatten(1).sum(1)
        return (seen.flatten(1).sum(1) / area.clamp_min(1e-6)).where(area > 0.5, torch.zeros_like(area)).cpu()

    def sample(self, num: int, generator: torch.Generator) -> Cameras:
        cameras = self.orbit.sample(num, generator)
        if self.min_fraction <= 0:
            return cameras
        best = self.visible_fraction(cameras)
        for _ in range(self.tries):
            bad = (best < self.min_fraction).nonzero().flatten()
            if bad.numel() == 0:
                break
            fresh = self.orbit.sample(int(bad.numel()), generator)
            score = self.visible_fraction(fresh)
            better = score > best[bad]
            rows, take = bad[better], better.nonzero().flatten()
            if rows.numel():
                cameras = Cameras(cameras.viewmats.index_copy(0, rows, fresh.viewmats[take]),
                                  cameras.Ks.index_copy(0, rows, fresh.Ks[take]), cameras.width, cameras.height)
                best[rows] = score[take]
        return cameras

