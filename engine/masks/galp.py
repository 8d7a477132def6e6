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

Where each piece lives: this module holds the settings, the order of the steps (galp) and the render fit (3);
galp_evidence.py the vote, certainty and view trust (1, 2, 4's certainty); galp_fill.py the support prior, the
colour kernel and the fills of weakly seen and unseen Gaussians (4, 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..scene import GaussianScene
from .compositing import ViewWeights
from .galp_evidence import (
    _batch, _Batch, _certainty, _column_median, _evidence, _median_orders, _pixel_weight, _trust,
)
from .galp_fill import _colour_kernel, _fill_unseen, _fill_weak, _supported
from .lift_scope import lift_scope
from .lift_vote import VISIBILITY_EPS
from .ops import knn_graph
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
    """Judge a view's error against the part's area in it (floored), not against all it sees
    (see galp_evidence._trust)."""
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
    predicts the labels in this scene (learned at the confidently labelled borders, see
    galp_fill._colour_kernel; off: the purely spatial fill)."""
    smoothing: float = 0.3
    """Weight of the neighbours' mean against a certainty of 1 in the fill."""
    fill_iters: int = 12
    """Jacobi iterations of the fill (how many neighbour hops a label can travel)."""
    prior: float = 0.01
    """Weight of the prior in the fill: what a Gaussian gets that neither it nor its neighbours have observed
    with a certainty well above this. The prior is its own label where the part is confidently present among
    its `support_k` nearest confident Gaussians, else "not the part" (see galp_fill._supported)."""
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


def galp(
    scene: GaussianScene,
    views: MaskViews | list[MaskViews],
    *,
    config: GalpConfig | None = None,
    view_weights: list[ViewWeights] | None = None,
) -> GalpResult:
    """Lift the masks of `views` ([C, H, W, P] per batch) to calibrated soft weights [P, N] with 3D-GALP.
    view_weights: the `compositing_weights` of each batch, when the caller already has them (then every
    Gaussian is lifted); without them the lift works in the masks' neighbourhood only (lift_scope.py)."""
    cfg = config or GalpConfig()
    groups = as_view_list(views)
    if view_weights is None:
        scope = lift_scope(scene, groups)
        N, P = len(scene), groups[0].num_parts
        if len(scope.index) == 0:
            return GalpResult(torch.zeros(P, N), torch.ones(N), torch.zeros(N),
                              view_trust=[torch.ones(len(g), P) for g in groups])
        inner = galp(scene.subset(scope.index), groups, config=cfg, view_weights=scope.weights)
        return GalpResult(scope.lifted(inner.weights), scope.expand(inner.uncertainty, 1.0),
                          scope.expand(inner.visibility), inner.losses, inner.view_trust)
    N, P = len(scene), groups[0].num_parts
    means = scene.means.detach().float().cpu()
    batches = [_batch(g, vw, means, cfg.silhouette, cfg.view_dependent) for g, vw in zip(groups, view_weights)]
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

