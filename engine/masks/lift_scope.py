"""Where lifting works: the part's neighbourhood, not the scene.

Lifting 2D masks to 3D (lift_vote.py, galp.py) needs compositing weights only where a mask can say something:
- positives: the pixels of the views' masks, plus a `border` of pixels around them (the Gaussians straddling
  the mask's edge, whose share inside it is what is measured);
- negatives: the part's neighbourhood — the box around the Gaussians that the masks mostly claim (pass 1),
  widened by `margin` of its size, projected into every view (pass 2). A view whose mask misses the part still
  says "not the part" there; Gaussians further away are "not the part" by default (weight 0, as unseen).
Both passes cull before projecting (engine/render/culling.py), so a click on a 13k-Gaussian part of a
million-Gaussian capture costs what its windows see. The lift then runs on the rows the windows touch and the
rows inside the neighbourhood box (unseen interiors are filled from their neighbours there), and `lifted`
puts the results back at full size, 0 outside the box: a Gaussian far behind the part, glimpsed through its
mask in one view and seen elsewhere (outside the windows) in the others, is not the part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..camera import Cameras
from ..render.projection import NEAR_PLANE
from ..scene import GaussianScene
from .compositing import ViewWeights, compositing_entries, compositing_weights
from .views_io import MaskViews

BORDER = 0.06  # the mask border, as a fraction of the view's larger side (at least MIN_BORDER pixels)
MIN_BORDER = 8
MARGIN = 0.15  # the neighbourhood box grows by this fraction of its diagonal on every side
CLAIMED = 0.5  # pass 1: a Gaussian is in the part's core when at least this share of its weight is in a mask


@dataclass
class LiftScope:
    """The rows a lift works on and their compositing weights (Gaussian indices local to `index`)."""

    index: Tensor  # [M] sorted rows of the scene
    weights: list[ViewWeights]  # one per batch of views, over the M rows
    num_gaussians: int  # N, the scene's size
    near: Tensor  # [M] bool: inside the neighbourhood box (the others are seen in the windows, e.g. far
    # behind the part through its mask, but are "not the part" whatever the windows say: `lifted` zeroes them)

    def lifted(self, weights: Tensor) -> Tensor:
        """Lifted weights [P, M] -> [P, N]: 0 outside the neighbourhood and outside the scope."""
        return self.expand(weights * self.near)

    def expand(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """values [..., M] -> [..., N], `fill` outside the scope."""
        out = values.new_full(values.shape[:-1] + (self.num_gaussians,), fill)
        out[..., self.index] = values
        return out


def lift_scope(scene: GaussianScene, views: list[MaskViews], *, border: float = BORDER,
               margin: float = MARGIN) -> LiftScope:
    """The scope of lifting `views` on `scene` (see the module docstring)."""
    around = [_dilate(g.masks.amax(dim=-1) > 0.5, _border_px(g.cameras, border)) for g in views]
    first = [compositing_weights(scene, g.cameras, regions=r) for g, r in zip(views, around)]
    claimed = _claimed(first, views, len(scene))
    core = claimed > 0
    means = scene.means.detach().float().cpu()
    box = _box(means[core], claimed[core], margin) if core.any() else None
    entries, scope = [], core.clone()
    for g, r in zip(views, around):
        regions = r if box is None else r | _box_regions(box, g.cameras, _border_px(g.cameras, border))
        entries.append(compositing_entries(scene, g.cameras, regions=regions))
        scope[entries[-1][2]] = True
    if box is not None:
        scope |= ((means >= box[0]) & (means <= box[1])).all(dim=-1)
    index = scope.nonzero().flatten()
    local = torch.full((len(scene),), -1, dtype=torch.long)
    local[index] = torch.arange(len(index))
    weights = [ViewWeights(view, pixel, local[gauss], weight, len(g), g.cameras.height, g.cameras.width, len(index))
               for (view, pixel, gauss, weight), g in zip(entries, views)]
    near = torch.ones(len(index), dtype=torch.bool) if box is None else \
        ((means[index] >= box[0]) & (means[index] <= box[1])).all(dim=-1)
    return LiftScope(index, weights, len(scene), near)


def _border_px(cameras: Cameras, border: float) -> int:
    return max(MIN_BORDER, int(round(border * max(cameras.width, cameras.height))))


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """[C, H, W] bool grown by `radius` pixels (a square neighbourhood)."""
    grown = torch.nn.functional.max_pool2d(mask[:, None].float(), 2 * radius + 1, stride=1, padding=radius)
    return grown[:, 0] > 0


def _claimed(weights: list[ViewWeights], views: list[MaskViews], num: int) -> Tensor:
    """[N]: how much compositing weight the masks put on each Gaussian, summed over the views where it has at
    least CLAIMED of the weight it shows near the masks inside a mask (the part's core, and what covers it;
    0 elsewhere). Gaussians glimpsed far behind the part through the mask get little: they weigh little in
    the neighbourhood's box."""
    core = torch.zeros(num)
    for vw, g in zip(weights, views):
        if vw.nnz == 0:
            continue
        inside = vw.splat_rows(vw.rows_of(g.masks.amax(dim=-1)))[:, 0]
        total = vw.splat_rows(torch.ones(len(vw.row_index), 1))[:, 0]
        claimed = (inside >= CLAIMED * total) & (total > 1e-3)
        core.index_add_(0, vw.pair_gauss[claimed], inside[claimed])
    return core


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
