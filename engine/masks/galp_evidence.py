"""3D-GALP's evidence: what the views say about each Gaussian, and how far each view is believed.

The lift (engine/masks/galp.py) asks this module four things, over fixed per-batch data (`_Batch`: the views'
compositing weights in the compact covered-pixels x visible-pairs form, and each pair's share inside each mask):
- the vote: per Gaussian and part, the views' shares weighted by seen area and trust (robust: near their
  weighted median where trust found wrong views);
- certainty: how well observed each Gaussian is (trusted seen area, discounted where the views disagree);
- view trust: each view's mask of each part judged against the consensus on the Gaussians it is certain of;
- the trusted pixel weight behind each Gaussian (the render fit's preconditioner).
The names keep their underscore: they are the internals of the galp*.py family, not for other modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..sh import sh_basis
from .compositing import ViewWeights
from .views_io import MaskViews


@dataclass
class _Batch:
    """Fixed data of one batch of views, in the compact form of `ViewWeights` (covered pixels x visible pairs)."""

    weights: ViewWeights
    gauss: Tensor  # [V] Gaussian of each visible (view, Gaussian) pair
    view: Tensor  # [V] view of each pair
    basis: Tensor  # [V, 3] degree-1 SH basis of the camera -> Gaussian direction
    pair_totals: Tensor  # [V] the Gaussian's compositing weight in that view, over counted pixels
    pair_area: Tensor  # [V] the same in world units (times (depth / focal)^2): views count alike at any size
    share: Tensor  # [V, P] the share of that weight inside each part's mask
    row_view: Tensor  # [R] view of each covered pixel
    alpha: Tensor  # [R] accumulated opacity
    masks: Tensor  # [R, P]
    loss_rows: Tensor  # [R] 1 where the pixel counts (alpha > 0.5 with `silhouette`, else every covered pixel)


def _batch(group: MaskViews, vw: ViewWeights, means: Tensor, silhouette: bool, view_dependent: bool) -> _Batch:
    """The fixed data of one batch of views (`silhouette`, `view_dependent`: as in GalpConfig)."""
    centres = group.cameras.centers.float()
    alpha_rows = vw.rows_of(vw.alpha())[:, 0]
    loss_rows = (alpha_rows > 0.5).float() if silhouette else torch.ones_like(alpha_rows)
    masks = vw.rows_of(group.masks)
    totals = vw.splat_rows(loss_rows[:, None])[:, 0]
    share = vw.splat_rows(masks * loss_rows[:, None]) / totals.clamp_min(1e-12)[:, None]
    viewmats, focal = group.cameras.viewmats.float(), group.cameras.Ks[:, 0, 0].float()
    depth = (viewmats[vw.pair_view, 2, :3] * means[vw.pair_gauss]).sum(-1) + viewmats[vw.pair_view, 2, 3]
    if view_dependent:
        dirs = torch.nn.functional.normalize(means[vw.pair_gauss] - centres[vw.pair_view], dim=-1)
        basis = sh_basis(1, dirs)[:, 1:]
    else:
        basis = torch.zeros(len(vw.pair_gauss), 3)
    return _Batch(
        weights=vw,
        gauss=vw.pair_gauss,
        view=vw.pair_view,
        basis=basis,
        pair_totals=totals,
        pair_area=totals * (depth / focal[vw.pair_view]) ** 2,
        share=share.clamp(0.0, 1.0),
        row_view=torch.div(vw.row_index, vw.height * vw.width, rounding_mode="floor"),
        alpha=alpha_rows,
        masks=masks,
        loss_rows=loss_rows,
    )

@torch.no_grad()
def _trust(batches: list[_Batch], labels: Tensor, certainty: Tensor, width: float,
           relative_error: bool = True, error_width: float = 0.15, across_parts: float = 0.5) -> list[Tensor]:
    """[C, P] per batch: trust in each view's mask of each part, from its agreement with the consensus
    (labels [N, P]) on the Gaussians the consensus is certain of (weights: their seen area in the view times
    their certainty [N, P]; a Gaussian most of whose few views are wrong does not get to judge the views).
    Two measures, each relative to the part's median over all views:
    - soft IoU of the view's shares with the labels: 1 at or above the median, exp(-1) at `width` below it;
    - error: the area where view and consensus disagree, over the part's area in that view (what either
      claims), that area floored at a quarter of the part's median area over the views that show it:
      1 up to the median, exp(-1) at median + `width`. A correct view that shows only a sliver of a small part
      has IoU near 0 with a consensus that differs by a few Gaussians, but a small error over the floored area;
      a view that drops a part it sees large has an error of 1. (`relative_error=False`: the error is the mean
      |share - label| over everything the view sees, exp(-1) at median + 0.05 — which lets a view drop a small
      part: its area is a small share of what the view sees.)
    A view is trusted if either says so; at least 0.01. A view where neither the mask nor the consensus shows
    the part has nothing to judge: 1."""
    stats = [_view_agreement(b, labels, certainty) for b in batches]
    ious, missed, area, total, shows = (torch.cat(t) for t in zip(*stats))
    P = labels.shape[1]

    def median(values: Tensor, p: int, empty: float) -> Tensor:
        picked = values[shows[:, p], p]
        return picked.median() if picked.numel() else values.new_tensor(empty)

    typical_iou = torch.stack([median(ious, p, 1.0) for p in range(P)])
    by_iou = torch.exp(-(((typical_iou[None] - ious).clamp_min(0) / width) ** 2))
    if relative_error:
        floor = 0.25 * torch.stack([median(area, p, 0.0) for p in range(P)])
        errors = missed / torch.maximum(area, floor[None]).clamp_min(1e-12)
        err_width = error_width
    else:
        errors, err_width = missed / total, 0.05
    typical_err = torch.stack([median(errors, p, 0.0) for p in range(P)])
    by_err = torch.exp(-(((errors - typical_err[None]).clamp_min(0) / err_width) ** 2))
    trust = torch.where(shows, torch.maximum(by_iou, by_err).clamp_min(0.01), torch.ones_like(ious))
    if across_parts > 0 and P >= 3:
        # A view whose masks of most parts disagree with the consensus is a bad view (a wrong pose, a failed
        # segmentation): its median trust over the parts it shows tempers its trust in each part.
        counted = torch.where(shows, trust, torch.full_like(trust, float("nan")))
        quality = counted.nanmedian(dim=1).values.nan_to_num(1.0)  # [C]
        trust = trust ** (1.0 - across_parts) * quality[:, None] ** across_parts
    return list(trust.split([b.weights.num_views for b in batches]))


def _view_agreement(batch: _Batch, labels: Tensor, certainty: Tensor) -> tuple[Tensor, ...]:
    """[C, P] each, weights = seen area x certainty: soft IoU of each view's shares with the labels of the
    Gaussians it sees, the weighted area where they differ (sum |share - label|), the weighted area either
    claims for the part (the soft union), the weighted area the view sees, and whether the part shows."""
    C = batch.weights.num_views
    w = batch.pair_area[:, None] * certainty[batch.gauss]  # [V, P]
    label = labels[batch.gauss]

    def per_view(values: Tensor) -> Tensor:
        return torch.zeros(C, labels.shape[1]).index_add_(0, batch.view, values)

    inter = per_view(w * torch.minimum(label, batch.share))
    union = per_view(w * torch.maximum(label, batch.share))
    error = per_view(w * (label - batch.share).abs())
    total = per_view(w).clamp_min(1e-12)
    return inter / union.clamp_min(1e-12), error, union, total, union > 1e-3 * total


def _pixel_weight(batches: list[_Batch], trust: list[Tensor], N: int, P: int) -> Tensor:
    """[N, P] each Gaussian's trusted compositing weight summed over views, in pixels (the fit's scale)."""
    out = torch.zeros(N, P)
    for b, omega in zip(batches, trust):
        out.index_add_(0, b.gauss, b.pair_totals[:, None] * omega[b.view])
    return out


def _evidence(
    batches: list[_Batch], trust: list[Tensor], N: int, P: int, robust: bool = True, outlier_width: float = 0.3,
    orders: list[Tensor] | None = None, median_from: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per Gaussian and part [N, P] each: the trusted vote, the trusted weight behind it, and the weighted
    mean absolute deviation of the views' shares from the vote (a share: the part of its weight inside the
    mask, one per view that sees it).
    The vote is the weighted median of the shares (`robust`; a minority of wrong views cannot move it) or
    their weighted mean (plain voting with trust); with `median_from` > 0 the robust vote only where trust
    discounted that much of the Gaussian's view weight, blended linearly toward the mean below it."""
    w_sum, m1, w_raw = torch.zeros(N, P), torch.zeros(N, P), torch.zeros(N, 1)
    for b, omega in zip(batches, trust):
        w = b.pair_area[:, None] * omega[b.view]
        w_sum.index_add_(0, b.gauss, w)
        w_raw.index_add_(0, b.gauss, b.pair_area[:, None])
        m1.index_add_(0, b.gauss, w * b.share)
    mean = m1 / w_sum.clamp_min(1e-12)
    plain = mean
    if robust:
        gauss = torch.cat([b.gauss for b in batches])
        share = torch.cat([b.share for b in batches])
        weight = torch.cat([b.pair_area[:, None] * omega[b.view] for b, omega in zip(batches, trust)])
        if orders is None:
            orders = _median_orders(gauss, share)
        median = torch.stack(
            [_weighted_median(gauss, share[:, p], weight[:, p], N, orders[p]) for p in range(P)], dim=1
        )
        # One reweighting step from the median (an M-estimator): views close to it count fully, so that
        # consistent views give their mean (which is sharper than the median at part borders).
        keep = torch.exp(-(((share - median[gauss]) / outlier_width) ** 2)) * weight
        mean = torch.zeros(N, P).index_add_(0, gauss, keep * share) / torch.zeros(N, P).index_add_(
            0, gauss, keep).clamp_min(1e-12)
        mean = torch.where(w_sum > 0, mean, median)
        if median_from > 0:  # the robust vote where trust found wrong views of this Gaussian, else the mean
            discounted = 1.0 - w_sum / w_raw.clamp_min(1e-12)
            robust_share = (discounted / median_from).clamp(0.0, 1.0)
            mean = robust_share * mean + (1.0 - robust_share) * plain
    deviation = torch.zeros(N, P)
    for b, omega in zip(batches, trust):
        w = b.pair_area[:, None] * omega[b.view]
        deviation.index_add_(0, b.gauss, w * (b.share - mean[b.gauss]).abs())
    return mean.clamp(0.0, 1.0), w_sum, deviation / w_sum.clamp_min(1e-12)


def _median_orders(gauss: Tensor, share: Tensor) -> list[Tensor]:
    """Per part, the order of the pairs by Gaussian, then by share (the shares do not change during a lift,
    only the views' trust: the sort is done once)."""
    return [torch.argsort(gauss.double() * 2.0 + share[:, p].double().clamp(0, 1)) for p in range(share.shape[1])]


def _weighted_median(group: Tensor, value: Tensor, weight: Tensor, N: int, order: Tensor | None = None) -> Tensor:
    """[N]: per group (0..N-1) the weighted median of `value` (the smallest value whose cumulative weight
    reaches half the group's total; 0 for empty groups). group, value, weight: [V]; order: the pairs sorted by
    group then value, when the caller has it."""
    if order is None:
        order = _median_orders(group, value[:, None])[0]
    g, v, w = group[order], value[order], weight[order].double()
    cum = torch.cumsum(w, 0)
    total = torch.zeros(N, dtype=torch.float64).index_add_(0, g, w)
    first = torch.full((N,), float("inf"), dtype=torch.float64)
    first = first.scatter_reduce(0, g, cum - w, reduce="amin")  # global cumulative weight where each group starts
    reached = (cum - first[g]) >= 0.5 * total[g]  # within-group cumulative weight reaches half
    pos = torch.where(reached, torch.arange(len(g)), torch.full_like(g, len(g)))
    best = torch.full((N,), len(g), dtype=torch.long).scatter_reduce(0, g, pos, reduce="amin")
    out = torch.zeros(N)
    has = best < len(g)
    out[has] = v[best[has]].float()
    return out


def _certainty(evidence: Tensor, spread: Tensor, seen: Tensor, scale: float) -> Tensor:
    """[N, P] in [0, 1): e / (e + scale * median e) for the trusted weight e, times (1 - 2 * deviation) (views
    that split half and half about a Gaussian leave it uncertain however often they see it). Unseen: 0."""
    reference = _column_median(evidence, seen[:, None] & (evidence > 0))  # [P]
    certainty = evidence / (evidence + scale * reference + 1e-12) * (1.0 - 2.0 * spread).clamp_min(0.0)
    return torch.where(seen[:, None], certainty, torch.zeros_like(certainty))


def _column_median(values: Tensor, where: Tensor) -> Tensor:
    """[P]: the median of each column of values [N, P] over the rows where `where` [N, P] holds (1 if none)."""
    return torch.stack([
        values[where[:, p], p].median() if where[:, p].any() else values.new_tensor(1.0)
        for p in range(values.shape[1])
    ])
