"""Where lifting works: the part's neighbourhood, not the scene.

Lifting 2D masks to 3D (lift_vote.py, galp.py) needs compositing weights only where a mask can say something:
- positives: the pixels of the views' masks, plus a `border` of pixels around them (the Gaussians straddling
  the mask's edge, whose share inside it is what is measured);
- negatives: the part's neighbourhood — the box around the Gaussians that the masks mostly claim (pass 1),
  widened by `margin` of its size, projected into every view (pass 2). A view whose mask misses the part still
  says "not the part" there; Gaussians further away are "not the part" by default (weight 0, as unseen).
Both passes cull before projecting (engine/render/culling.py), so a click on a 13k-Gaussian part of a
million-Gaussian capture costs what its windows see, and neither keeps a view's entries longer than it needs:
pass 1 sums them per Gaussian as each view is splatted; pass 2 keeps only the entries of the rows inside the
neighbourhood box, and each pixel's full opacity (`ViewWeights.coverage`: what is behind the part still
covers the pixel). The lift then runs on the rows inside the box (unseen interiors are filled from their
neighbours there), and `lifted` puts the results back at full size, 0 outside the box: a Gaussian far behind
the part, glimpsed through its mask in one view and seen elsewhere in the others, is not the part, and it
takes no part in the lift either (in a big capture the windows glimpse ~1M such rows; the box holds the part's
neighbourhood). With no core (no Gaussian mostly inside a mask) every row the windows touch is lifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..camera import Cameras
from ..render.projection import NEAR_PLANE
from ..scene import GaussianScene
from .compositing import ViewWeights, per_view_entries
from .views_io import MaskViews

BORDER = 0.06  # the mask border, as a fraction of the view's larger side (at least MIN_BORDER pixels)
MIN_BORDER = 8
MARGIN = 0.15  # the neighbourhood box grows by this fraction of its diagonal on every side
CLAIMED = 0.5  # pass 1: a Gaussian is in the part's core when at least this share of its weight is in a mask


@dataclass
class LiftScope:
    """The rows a lift works on and their compositing weights (Gaussian indices local to `index`)."""

    index: Tensor  # [M] sorted rows of the scene
    weights: list[ViewWeights]  # one per batch of views, over the M rows (with the pixels' full `coverage`)
    num_gaussians: int  # N, the scene's size

    def lifted(self, weights: Tensor) -> Tensor:
        """Lifted weights [P, M] -> [P, N]: 0 outside the scope."""
        return self.expand(weights)

    def expand(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """values [..., M] -> [..., N], `fill` outside the scope."""
        out = values.new_full(values.shape[:-1] + (self.num_gaussians,), fill)
        out[..., self.index] = values
        return out


def lift_scope(scene: GaussianScene, views: list[MaskViews], *, border: float = BORDER,
               margin: float = MARGIN) -> LiftScope:
    """The scope of lifting `views` on `scene` (see the module docstring)."""
    N = len(scene)
    around = [_dilate(g.masks.amax(dim=-1) > 0.5, _border_px(g.cameras, border)) for g in views]
    claimed = torch.zeros(N)
    for g, r in zip(views, around):
        for gauss, inside in per_view_entries(scene, g.cameras, _claimed(g.masks.amax(dim=-1)), regions=r):
            claimed.index_add_(0, gauss, inside)
    core = claimed > 0
    means = scene.means.detach().float().cpu()
    box = _box(means[core], claimed[core], margin) if core.any() else None
    near = None if box is None else ((means >= box[0]) & (means <= box[1])).all(dim=-1)  # [N]
    parts, scope = [], torch.zeros(N, dtype=torch.bool) if near is None else near.clone()
    for g, r in zip(views, around):
        regions = r if box is None else r | _box_regions(box, g.cameras, _border_px(g.cameras, border))
        parts.append(per_view_entries(scene, g.cameras, _kept(near, g.cameras), regions=regions))
        for _, gauss, _, _ in parts[-1]:
            scope[gauss] = True
    index = scope.nonzero().flatten()
    local = torch.full((N,), -1, dtype=torch.long)
    local[index] = torch.arange(len(index))
    weights = []
    for g, entries in zip(views, parts):
        view = torch.cat([torch.full((len(e[0]),), c, dtype=torch.long) for c, e in enumerate(entries)])
        pixel, gauss, weight, coverage = (torch.cat([e[i] for e in entries]) for i in range(4))
        weights.append(ViewWeights(view, pixel, local[gauss], weight, len(g), g.cameras.height, g.cameras.width,
                                   len(index), coverage.reshape(len(g), g.cameras.height, g.cameras.width)))
    return LiftScope(index, weights, N)


def _claimed(masks: Tensor):  # masks [C, H, W]
    """The pass-1 reduction of one view's entries: (rows, the compositing weight the mask puts on each) for the
    rows with at least CLAIMED of the weight they show near the mask inside it (the part's core, and what
    covers it). Gaussians glimpsed far behind the part through the mask get little: they weigh little in the
    neighbourhood's box."""
    flat = masks.reshape(len(masks), -1).float()

    def reduce(c: int, pixel: Tensor, gauss: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        rows, at = torch.unique_consecutive(gauss, return_inverse=True)  # a Gaussian's entries are consecutive
        inside = torch.zeros(len(rows)).index_add_(0, at, weight * flat[c, pixel])
        total = torch.zeros(len(rows)).index_add_(0, at, weight)
        claimed = (inside >= CLAIMED * total) & (total > 1e-3)
        return rows[claimed], inside[claimed]

    return reduce


def _kept(near: Tensor | None, cameras: Cameras):
    """The pass-2 reduction of one view's entries: (pixel, gauss, weight) of the rows `near` the part
    (all when None), and the view's accumulated opacity [H * W] over every row (what is behind the part
    still covers the pixel)."""
    def reduce(c: int, pixel: Tensor, gauss: Tensor, weight: Tensor):
        coverage = torch.zeros(cameras.height * cameras.width).index_add_(0, pixel, weight)
        if near is not None:
            keep = near[gauss]
            pixel, gauss, weight = pixel[keep], gauss[keep], weight[keep]
        return pixel, gauss, weight, coverage

    return reduce


def _border_px(cameras: Cameras, border: float) -> int:
    return max(MIN_BORDER, int(round(border * max(cameras.width, cameras.height))))


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """[C, H, W] bool grown by `radius` pixels (a square neighbourhood: a row pass then a column pass, the
    same set as one square max-pool at a fraction of its cost)."""
    pool = torch.nn.functional.max_pool2d
    rows = pool(mask[:, None].float(), (1, 2 * radius + 1), stride=1, padding=(0, radius))
    return pool(rows, (2 * radius + 1, 1), stride=1, padding=(radius, 0))[:, 0] > 0


def _box(points: Tensor, weights: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """(lo [3], hi [3]) around `points` [K, 3]: their weighted 1%-99% range (`weights` [K]: a few Gaussians
    glimpsed far away do not blow the box up), widened by `margin` of its diagonal."""
    lo, hi = [], []
    for axis in range(3):
        order = torch.argsort(points[:, axis])
        cum_share = torch.cumsum(weights[order].double(), 0) / weights.sum().double()
        at = torch.searchsorted(cum_share, torch.tensor([0.01, 0.99], dtype=torch.float64)).clamp_max(len(order) - 1)
        lo.append(points[order[at[0]], axis])
        hi.append(points[order[at[1]], axis])
    lo, hi = torch.stack(lo), torch.stack(hi)
    pad = margin * float((hi - lo).norm()) + 1e-6
    return lo - pad, hi + pad


def _box_regions(box: tuple[Tensor, Tensor], cameras: Cameras, border: int) -> Tensor:
    """[C, H, W] bool: the pixel rectangle of the box's projection in each view, plus `border` pixels (the
    whole image when the box reaches behind the camera)."""
    lo, hi = box
    corners = torch.stack([torch.where(torch.tensor([i & 1, i & 2, i & 4]).bool(), hi, lo) for i in range(8)])
    out = torch.zeros(len(cameras), cameras.height, cameras.width, dtype=torch.bool)
    viewmats, Ks = cameras.viewmats.float().cpu(), cameras.Ks.float().cpu()
    for c in range(len(cameras)):
        pc = corners @ viewmats[c, :3, :3].T + viewmats[c, :3, 3]
        if (pc[:, 2] <= NEAR_PLANE).any():
            out[c] = True
            continue
        x = Ks[c, 0, 0] * pc[:, 0] / pc[:, 2] + Ks[c, 0, 2]
        y = Ks[c, 1, 1] * pc[:, 1] / pc[:, 2] + Ks[c, 1, 2]
        x0, x1 = max(0, int(x.min()) - border), min(cameras.width, int(x.max()) + 1 + border)
        y0, y1 = max(0, int(y.min()) - border), min(cameras.height, int(y.max()) + 1 + border)
        if x1 > x0 and y1 > y0:
            out[c, y0:y1, x0:x1] = True
    return out
