"""3D-GALP lifting (after RoMaP): per-Gaussian labels fitted to multi-view 2D masks, robustly and calibrated.

Each Gaussian carries, for each part p, a label `dc[n, p]` (optionally, `view_dependent`, degree-1 spherical
harmonics on top: three coefficients `sh1[n, :, p]`, so that seen from camera c the label is
    label_c(n, p) = dc[n, p] + sum_k Y1_k(direction c -> n) * sh1[n, k, p]),
composited into label images exactly like colours (engine/masks/compositing.py) and fitted to the 2D masks with
a (smoothed) L1 loss. Parts are separate channels, coupled only through view trust when three or more are
lifted together (a view wrong about most parts is a bad view); with one or two parts, lifting them at once
gives the same weights as lifting each alone.

The output is calibrated: weight 0.5 means "as likely in as out", so a hard mask is `weights > 0.5` with no
suggested threshold (bench/masks.py's "oracle_gap": the best cut beats 0.5 by <= 0.03 IoU). What makes it so:
1. labels start from a vote (per Gaussian, the views' shares, each view weighted by the Gaussian's seen area
   in it, so close-ups and big images do not outvote the others), i.e. from what the views say, never from
   the decision threshold: robust (the shares near their weighted median) for the Gaussians some of whose
   views trust found wrong, the trusted mean for the others (on clean views the mean is the better estimate);
2. view trust: each view's mask of each part is compared with the consensus on the Gaussians the consensus
   is certain of (soft IoU, and the disagreeing area over the part's area in that view, each relative to the
   part's median view), blended with the view's trust over the other parts; flipped, shifted, bled, dropped
   and wrong-part masks are down-weighted in the vote, the fit and the evidence;
3. the render fit (preconditioned gradient steps, each Gaussian moving by about `lr` times the weighted mean
   of its residuals) sharpens what a vote blurs where Gaussians share pixels;
4. certainty comes from observation only: a Gaussian's trusted seen area summed over views, discounted where
   the trusted views disagree about it. Weakly seen Gaussians are filled from their confidently labelled
   neighbours (a certainty-weighted normalized convolution on the kNN graph, where a neighbour of another
   colour counts less as far as colour predicts the labels in this scene: a learned appearance kernel, as in
   a dense CRF), so a well observed label stays;
   what neither a Gaussian nor its neighbours observed well tends to a faint prior: its own vote where the
   part is confidently present among the nearest confident Gaussians, else "not the part" — the inside of
   the scarf, seen only through it, stays scarf; a head Gaussian glimpsed through the eye is not an eye;
5. Gaussians that no view sees (interiors) take the distance-weighted mean label of their nearest confidently
   observed ones, weighted by the same colour kernel.
Each piece can be switched off (GalpConfig), which is how bench/masks.py measures what each buys.

Choices that differ from RoMaP's code: one label channel per part instead of parts as colours; labels start
from the vote; the neighbour term is a certainty-weighted fill after the fit instead of a loss; view trust,
the support prior and the colour affinity are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..scene import GaussianScene, sh0_to_rgb
from ..sh import sh_basis
from .compositing import ViewWeights, compositing_weights
from .lift_vote import VISIBILITY_EPS
from .ops import knn_graph, nearest
from .views_io import MaskViews, as_view_list

THRESHOLD = 0.5  # the calibrated cut: weight > 0.5 means "more likely in than out"


@dataclass
class GalpConfig:
    """Settings of 3D-GALP (tuned on bench/masks.py's tuning seeds 100+, whole-sphere views of 128-256 px)."""

    steps: int = 16
    """Preconditioned gradient steps of the render fit over all views at once (0 = no fit: trusted vote)."""
    lr: float = 0.3
    """Initial step size in label units (cosine-decayed to lr / 20); labels live in [0, 1]."""
    smooth_l1: float = 0.02
    """Width of the smoothed L1 (Charbonnier) loss, so that exactly fitted pixels give no gradient noise."""
    view_dependent: bool = False
    """Fit the three degree-1 SH coefficients too (they may absorb what one side claims and the other denies;
    off: with the support prior they cost IoU at every corruption level on the tuning seeds)."""
    sh_decay: float = 0.05
    """L2 weight on the view-dependent coefficients: they may explain view disagreement, not the label."""
    robust_vote: bool = True
    """Start from a robust vote (the mean of the views' shares within `outlier_width` of their weighted median)
    instead of their weighted mean."""
    median_from: float = 0.1
    """How much of a Gaussian's view weight trust must have discounted for the robust vote to be used in full
    (linearly blended with the trusted mean below; 0 = robust everywhere). Where every view of a Gaussian is
    trusted the mean is the better estimate: at part borders the views' shares differ legitimately and the
    median snaps to the majority."""
    outlier_width: float = 0.3
    """Shares further than this from the median count exp(-(distance / width)^2) in the robust vote."""
    view_trust: bool = True
    """Down-weight views whose mask disagrees with the current 3D consensus."""
    trust_rounds: int = 3
    """Rounds of (trust from the vote's consensus, trusted vote) before the fit."""
    trust_width: float = 0.15
    """Soft-IoU gap below the part's median view at which a view's trust falls to exp(-1)."""
    relative_error: bool = True
    """Judge a view's error against the part's area in it (floored), not against all it sees (see _trust)."""
    error_width: float = 0.15
    """Relative error above the part's median view at which a view's trust falls to exp(-1)."""
    across_parts: float = 0.5
    """With 3+ parts lifted together: a view's trust in a part is the geometric blend (this weight on the view's
    side; 0 = parts judged alone) of its own and the view's median trust over the parts it shows."""
    silhouette: bool = True
    """Leave out pixels the scene covers only partly (alpha <= 0.5): a 2D mask says little about them."""
    knn: int = 16
    """Neighbours used by the fill of weakly seen and unseen Gaussians."""
    fill: bool = True
    """Fill weakly seen Gaussians from confidently labelled neighbours (certainty-weighted smoothing)."""
    evidence_scale: float = 0.05
    """Certainty = e / (e + evidence_scale * median e), e = trusted compositing weight summed over views."""
    appearance: bool = True
    """Weigh the fill's neighbours (and the unseen Gaussians' sources) by colour likeness, as much as colour
    predicts the labels in this scene (learned at the confidently labelled borders, see _colour_kernel; off:
    the purely spatial fill)."""
    smoothing: float = 0.3
    """Weight of the neighbours' mean against a certainty of 1 in the fill."""
    fill_iters: int = 12
    """Jacobi iterations of the fill (how many neighbour hops a label can travel)."""
    prior: float = 0.01
    """Weight of the prior in the fill: what a Gaussian gets that neither it nor its neighbours have observed
    with a certainty well above this. The prior is its own label where the part is confidently present among
    its `support_k` nearest confident Gaussians, else "not the part" (see _supported)."""
    support: bool = True
    """The fill's prior: a Gaussian's own vote where the part is confidently present nearby, else 0 (False: 0
    everywhere, which drops the inside of thick parts seen only through their surface)."""
    support_k: int = 8
    """How many of the nearest confidently observed Gaussians (certainty > 0.5) judge whether the part is near."""
    fill_unseen: bool = True
    """Give never-seen Gaussians the labels of their nearest confidently seen Gaussians, weighted by colour likeness
    with `appearance` (else 0, as in voting)."""


@dataclass
class GalpResult:
    weights: Tensor  # [P, N] soft weights in [0, 1], calibrated: > 0.5 = more likely in than out
    uncertainty: Tensor  # [N] in [0, 1]: 1 - observation certainty (max over parts); 1 = never seen
    visibility: Tensor  # [N] summed compositing weight over all views (0 = never seen)
    losses: list[float] = field(default_factory=list)  # render loss per fit step (per counted pixel)
    view_trust: list[Tensor] = field(default_factory=list)  # [C, P] per view batch: final trust in each mask
    threshold: float = THRESHOLD  # the calibrated cut (always 0.5; kept for callers that read it)


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


def _batch(group: MaskViews, vw: ViewWeights, means: Tensor, cfg: GalpConfig) -> _Batch:
    centres = group.cameras.centers.float()
    alpha_rows = vw.rows_of(vw.alpha())[:, 0]
    loss_rows = (alpha_rows > 0.5).float() if cfg.silhouette else torch.ones_like(alpha_rows)
    masks = vw.rows_of(group.masks)
    totals = vw.splat_rows(loss_rows[:, None])[:, 0]
    share = vw.splat_rows(masks * loss_rows[:, None]) / totals.clamp_min(1e-12)[:, None]
    viewmats, focal = group.cameras.viewmats.float(), group.cameras.Ks[:, 0, 0].float()
    depth = (viewmats[vw.pair_view, 2, :3] * means[vw.pair_gauss]).sum(-1) + viewmats[vw.pair_view, 2, 3]
    if cfg.view_dependent:
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


def galp(
    scene: GaussianScene,
    views: MaskViews | list[MaskViews],
    *,
    config: GalpConfig | None = None,
    view_weights: list[ViewWeights] | None = None,
) -> GalpResult:
    """Lift the masks of `views` ([C, H, W, P] per batch) to calibrated soft weights [P, N] with 3D-GALP."""
    cfg = config or GalpConfig()
    groups = as_view_list(views)
    if view_weights is None:
        view_weights = [compositing_weights(scene, g.cameras) for g in groups]
    N, P = len(scene), groups[0].num_parts
    means = scene.means.detach().float().cpu()
    batches = [_batch(g, vw, means, cfg) for g, vw in zip(groups, view_weights)]
    visibility = torch.zeros(N)
    for b in batches:
        visibility.index_add_(0, b.gauss, b.weights.splat_rows(torch.ones(len(b.alpha), 1))[:, 0])
    seen = visibility > VISIBILITY_EPS

    trust = [torch.ones(len(g), P) for g in groups]  # [C, P] per batch: how much each view's mask is believed
    orders = _median_orders(torch.cat([b.gauss for b in batches]), torch.cat([b.share for b in batches])) \
        if cfg.robust_vote else None

    def evidence_of(trust: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        return _evidence(batches, trust, N, P, cfg.robust_vote, cfg.outlier_width, orders, cfg.median_from)

    vote, evidence, spread = evidence_of(trust)
    for _ in range(cfg.trust_rounds if cfg.view_trust else 0):
        certainty = _certainty(evidence, spread, seen, cfg.evidence_scale)
        trust = _trust(batches, vote, certainty, cfg.trust_width, cfg.relative_error, cfg.error_width,
                       cfg.across_parts)
        vote, evidence, spread = evidence_of(trust)

    labels, losses = vote, []
    if cfg.steps > 0:
        labels, trust, losses = _fit(batches, trust, vote, cfg)
        vote, evidence, spread = evidence_of(trust)

    certainty = _certainty(evidence, spread, seen, cfg.evidence_scale)
    kernel = None
    if cfg.fill and cfg.knn > 0:  # unseen Gaussians have certainty 0: they take no part as neighbours
        target = _supported(vote, labels, certainty, means, cfg.support_k) if cfg.support else None
        neighbours = knn_graph(means, cfg.knn)
        kernel = _colour_kernel(scene, neighbours, labels, certainty) if cfg.appearance else None
        affinity = kernel(torch.arange(N)[:, None], neighbours) if kernel is not None else None
        labels = _fill_weak(labels, certainty, neighbours, cfg.smoothing, cfg.fill_iters, cfg.prior,
                            target, affinity)
    labels = torch.where(seen[:, None], labels, torch.zeros_like(labels))
    if cfg.fill_unseen:
        confident = seen & (certainty.max(dim=1).values > 0.5)
        labels = _fill_unseen(labels, seen, means, max(cfg.knn, 1), confident if confident.any() else seen,
                              kernel)
    weights = labels.clamp(0.0, 1.0).T.contiguous()
    uncertainty = 1.0 - certainty.max(dim=1).values
    return GalpResult(weights, uncertainty, visibility, losses, trust)


def _fit(
    batches: list[_Batch], trust: list[Tensor], init: Tensor, cfg: GalpConfig
) -> tuple[Tensor, list[Tensor], list[float]]:
    """The render fit: labels [N, P] (view-independent part) starting from `init`, the final trust, losses."""
    N, P = init.shape
    dc = init.clone().requires_grad_(True)
    sh1 = torch.zeros(N, 3, P, requires_grad=cfg.view_dependent)
    pixel_weight = _pixel_weight(batches, trust, N, P)
    floor = 0.05 * _column_median(pixel_weight, pixel_weight > 0)  # [P]
    coverage = max(1.0, sum(float(b.loss_rows.sum()) for b in batches))
    losses = []
    for step in range(cfg.steps):
        # Per-Gaussian, per-part preconditioner: the gradient is a sum over the pixels a Gaussian covers;
        # dividing by its (trusted) weight turns it into a weighted average of residual signs.
        precond = 1.0 / (pixel_weight + floor)  # [N, P]
        render_loss = dc.new_zeros(())
        for b, omega in zip(batches, trust):
            labels = dc[b.gauss]
            if cfg.view_dependent:
                labels = labels + (b.basis[:, :, None] * sh1[b.gauss]).sum(1)  # [V, P] label seen in that view
            residual = b.weights.render_pairs(labels) - b.masks * b.alpha[:, None]
            rho = torch.sqrt(residual * residual + cfg.smooth_l1**2) - cfg.smooth_l1
            render_loss = render_loss + (omega[b.row_view] * b.loss_rows[:, None] * rho).sum()
        lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(cfg.steps, 1))))
        if cfg.view_dependent:
            loss = render_loss + cfg.sh_decay * (pixel_weight[:, None, :] * sh1 * sh1).sum()
            dc_grad, sh_grad = torch.autograd.grad(loss, [dc, sh1])
        else:
            (dc_grad,) = torch.autograd.grad(render_loss, [dc])
        with torch.no_grad():
            dc -= lr * dc_grad * precond
            dc.clamp_(0.0, 1.0)
            if cfg.view_dependent:
                sh1 -= lr * sh_grad * precond[:, None, :]
        losses.append(float(render_loss.detach()) / coverage)
    return dc.detach(), trust, losses


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


def _supported(own: Tensor, labels: Tensor, certainty: Tensor, means: Tensor, k: int) -> Tensor:
    """[N, P]: each Gaussian's own (voted) label [N, P] where the part is confidently present near it, capped
    by the highest fitted label among its k nearest Gaussians of certainty > 0.5; 0 where none is: the fill's
    prior, what a Gaussian that neither it nor its neighbours observed well tends to.
    Weakly seen Gaussians mostly report the label of whatever covers them: a Gaussian inside the scarf, seen
    only through the scarf, is scarf; one deep in the head, glimpsed through the eye, is not an eye. Masks
    cannot tell these apart, the scene can: parts are contiguous, so a weak "eye" far from any confident eye
    Gaussian is discounted, a weak "scarf" beside confident scarf is kept."""
    target = torch.zeros_like(labels)
    everyone = torch.arange(len(means))
    for p in range(labels.shape[1]):
        confident = (certainty[:, p] > 0.5).nonzero().flatten()
        if len(confident) == 0:
            continue
        _, idx = nearest(means, confident, everyone, min(k, len(confident)))
        nearby = labels[confident[idx], p].max(dim=1).values
        target[:, p] = torch.minimum(own[:, p], nearby)
    return target


@dataclass
class _ColourKernel:
    """How much a Gaussian j's label should count for Gaussian i, from their colour difference, per part."""

    rgb: Tensor  # [N, 3] base colours (degree-0 SH)
    cuts: Tensor  # [bins - 1] edges of the colour-difference bins
    rate: Tensor  # [bins, P] in (0, 1]: the learned weight of each bin

    def __call__(self, i: Tensor, j: Tensor) -> Tensor:
        """Indices i, j (broadcastable, e.g. [N, 1] and [N, K]) -> weights [..., P]."""
        return self.rate[torch.bucketize((self.rgb[i] - self.rgb[j]).norm(dim=-1), self.cuts)]


def _colour_kernel(scene: GaussianScene, neighbours: Tensor, labels: Tensor, certainty: Tensor,
                   bins: int = 16) -> _ColourKernel:
    """The fill's appearance kernel, as in a dense CRF, but learned from the scene rather than given a width:
    per part, over the kNN pairs at a label border (a confidently labelled Gaussian with a confident neighbour
    on the other side of 0.5), the share of pairs on the same side per bin of colour difference (quantile
    bins of the base colours' distance, Laplace-smoothed, scaled so the best bin is 1).
    Where parts differ in colour (the grey head under the red scarf's rim) a neighbour of another colour
    counts little; where colour says nothing about the parts, every bin is alike and the fill stays spatial."""
    rgb = sh0_to_rgb(scene.sh0.detach().float().cpu().reshape(len(scene), -1)[:, :3])
    diff = (rgb[:, None, :] - rgb[neighbours]).norm(dim=-1)  # [N, K]
    sample = diff.flatten()[:: max(1, diff.numel() // 200_000)]
    cuts = torch.quantile(sample, torch.linspace(0, 1, bins + 1)[1:-1])
    which = torch.bucketize(diff, cuts)  # [N, K]
    rate = torch.ones(bins, labels.shape[1])
    for p in range(labels.shape[1]):
        confident = certainty[:, p] > 0.5
        pairs = confident[:, None] & confident[neighbours]
        same = (labels[:, p, None] > 0.5) == (labels[neighbours, p] > 0.5)
        pairs &= (pairs & ~same).any(dim=1, keepdim=True)  # only Gaussians at a border
        agree = torch.zeros(bins).index_add_(0, which[pairs], same[pairs].float())
        count = torch.zeros(bins).index_add_(0, which[pairs], torch.ones(int(pairs.sum())))
        share = (agree + 1.0) / (count + 1.0)
        rate[:, p] = share / share.max()
    return _ColourKernel(rgb, cuts, rate)


def _fill_weak(
    labels: Tensor, certainty: Tensor, neighbours: Tensor, smoothing: float, iters: int, prior: float,
    target: Tensor | None = None, affinity: Tensor | None = None,
) -> Tensor:
    """Certainty-weighted fill [N, P] (a normalized convolution on the kNN graph). Each Jacobi step
        u = (c * labels + s * sum_j a_j k_j u_j / K + prior * target) / (c + s * sum_j a_j k_j / K + prior)
        k = (c + s * sum_j a_j k_j / K) / (1 + s)
    over the K neighbours j (a_j: `affinity` [N, K] or [N, K, P], default 1), from u = labels, k = c: a
    certain label barely moves; a weakly seen one takes the labels of its confident neighbours, weighted by their
    confidence (and affinity), a weakly seen cluster fills in from its confident rim inwards (never from its own
    unreliable labels), and what nobody saw well tends to the prior
    `target` (default 0, "not the part"; galp passes _supported)."""
    K = neighbours.shape[1]
    if K == 0:
        return labels
    u, conf = labels, certainty
    anchor = certainty * labels + (prior * target if target is not None else 0.0)
    a = (affinity if affinity.dim() == 3 else affinity[..., None]) if affinity is not None else 1.0
    for _ in range(iters):
        num = (a * (conf * u)[neighbours]).sum(dim=1) / K  # [N, P]
        den = (a * conf[neighbours]).sum(dim=1) / K
        u = (anchor + smoothing * num) / (certainty + smoothing * den + prior).clamp_min(1e-12)
        conf = (certainty + smoothing * den) / (1.0 + smoothing)
    return u


def _fill_unseen(labels: Tensor, seen: Tensor, means: Tensor, k: int, source: Tensor | None = None,
                 kernel: _ColourKernel | None = None) -> Tensor:
    """Give every unseen Gaussian the inverse-distance-weighted mean label of its k nearest `source` Gaussians
    ([N] bool; default: the seen ones; galp passes the confidently observed ones, since the weakly seen
    Gaussians next to an interior are themselves guesses): an interior Gaussian takes the label of the
    surface around it — with `kernel`, of the surface that looks like it (the neck inside the scarf)."""
    unseen = (~seen).nonzero().flatten()
    seen_idx = (seen if source is None else source).nonzero().flatten()
    if len(unseen) == 0 or len(seen_idx) == 0:
        return labels
    dist, idx = nearest(means, seen_idx, unseen, min(k, len(seen_idx)))
    w = (1.0 / dist.clamp_min(1e-6))[..., None]  # [U, k, 1]
    if kernel is not None:
        w = w * kernel(unseen[:, None], seen_idx[idx])  # [U, k, P]
    labels[unseen] = (w * labels[seen_idx[idx]]).sum(1) / w.sum(1).clamp_min(1e-12)
    return labels
