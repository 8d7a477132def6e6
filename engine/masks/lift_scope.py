"""Where lifting works: the part's neighbourhood, not the scene.

Lifting 2D masks to 3D (lift_vote.py, galp.py) needs compositing weights only where a mask can say something:
- positives: the pixels of the views' masks, plus a `border` of pixels around them (the Gaussians straddling
  the mask's edge, whose share inside it is what is measured);
- negatives: the part's neighbourhood — the box around the Gaussians that the masks mostly claim (pass 1),
  widened by `margin` of its size, projected into every view (pass 2). A view whose mask misses the part still
  says "not the part" there; Gaussians further away are "not the part" by default (weight 0, as unseen).
Both passes cull before projecting (engine/render/culling.py), so a click on a 13k-Gaussian part of a
million-Gaussian capture costs what its windows see, and neither makes entries it does not keep: pass 1 sums
each Gaussian's weight (in the mask and in all) inside the splatting loop; pass 2 projects only the rows pass 1
did not reach and merges them into pass 1's depth order (depth_order.py: pass 2's window holds pass 1's),
makes entries for the rows inside the neighbourhood box only, and sums each pixel's full opacity in the loop
(`ViewWeights.coverage`: what is behind the part still covers the pixel). The weights are those of splatting
every row and reducing the entries afterwards, bit for bit (tests/masks/test_lift_scope.py).
The lift then runs on the rows inside the box (unseen interiors are filled from their neighbours there), and
`lifted` puts the results back at full size, 0 outside the box: a Gaussian far behind the part, glimpsed
through its mask in one view and seen elsewhere in the others, is not the part, and it takes no part in the
lift either (in a big capture the windows glimpse ~1M such rows; the box holds the part's
neighbourhood). With no core (no Gaussian mostly inside a mask) every row the windows touch is lifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..camera import Cameras
from ..render.projection import NEAR_PLANE
from ..scene import GaussianScene
from .compositing import ViewWeights, map_views, reaching_windows, splat
from .depth_order import DepthOrder, depth_order, geometry, merged
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
    geo = geometry(scene)  # float32 on the CPU, without colours: what projection reads
    around = [_dilate(g.masks.amax(dim=-1) > 0.5, _border_px(g.cameras, border)) for g in views]
    firsts = [_claimed_pass(geo, g, r) for g, r in zip(views, around)]
    claimed = torch.zeros(N)
    for first in firsts:
        for _, _, rows, inside in first:
            claimed.index_add_(0, rows, inside)
    core = claimed > 0
    means = geo.means
    box = _box(means[core], claimed[core], margin) if core.any() else None
    near = None if box is None else ((means >= box[0]) & (means <= box[1])).all(dim=-1)  # [N]
    scope = torch.zeros(N, dtype=torch.bool) if near is None else near.clone()
    parts = []
    for g, r, first in zip(views, around, firsts):
        regions = r if box is None else r | _box_regions(box, g.cameras, _border_px(g.cameras, border))
        parts.append(_kept_pass(geo, g.cameras, regions, first, near))
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


def _claimed_pass(geo: GaussianScene, views: MaskViews, regions: Tensor
                  ) -> list[tuple[Tensor, DepthOrder | None, Tensor, Tensor]]:
    """Pass 1, per view: (the rows culled for its window, their DepthOrder (None: empty window), the rows with
    at least CLAIMED of the weight they show in the region inside the mask, the weight the mask puts on each).
    These are the part's core and what covers it; Gaussians glimpsed far behind the part through the mask get
    little: they weigh little in the neighbourhood's box. Pass 2 reuses the culled rows' projection."""
    masks = views.masks.amax(dim=-1).float()  # [C, H, W]
    cameras = views.cameras.to("cpu", torch.float32)  # as the splatting loop reads them
    boxes, reached = reaching_windows(geo, cameras, regions)

    def one(c: int):
        if boxes[c] is None:
            return reached[c][:0], None, reached[c][:0], torch.zeros(0)
        order = depth_order(geo, cameras[c], reached[c])
        inside, total = splat(order, cameras[c], regions[c], boxes[c], pixel_weight=masks[c].reshape(-1),
                              emit=torch.zeros(len(order), dtype=torch.bool)).sums.unbind(-1)
        claimed = (inside >= CLAIMED * total) & (total > 1e-3)
        return reached[c], order, order.rows[claimed], inside[claimed]

    return map_views(one, len(views))


def _kept_pass(geo: GaussianScene, cameras: Cameras, regions: Tensor, first: list, near: Tensor | None
               ) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Pass 2, per view: (pixel, gauss, weight) of the rows `near` the part (all when None) at the pixels of
    `regions`, and the view's accumulated opacity [H * W] over every row (what is behind the part still covers
    the pixel). The rows pass 1 culled and projected (`first`) are merged in, not projected again."""
    cameras = cameras.to("cpu", torch.float32)  # as the splatting loop reads them
    boxes, reached = reaching_windows(geo, cameras, regions)

    def one(c: int):
        culled, before = first[c][0], first[c][1]
        if boxes[c] is None:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, torch.zeros(0), torch.zeros(cameras.height * cameras.width)
        rows = reached[c]
        if before is not None:  # the window holds pass 1's: so do the rows reaching it
            new = torch.ones(len(geo), dtype=torch.bool)
            new[culled] = False
            rows = rows[new[rows]]
        order = depth_order(geo, cameras[c], rows)
        if before is not None:
            order = merged(before, order)
        out = splat(order, cameras[c], regions[c], boxes[c], coverage=True,
                    emit=None if near is None else near[order.rows])
        return out.pixel, order.rows[out.index], out.weight, out.coverage

    return map_views(one, len(cameras))


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
