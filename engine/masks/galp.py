"""3D-GALP lifting (after RoMaP): per-Gaussian label features fitted to multi-view 2D masks, robustly.

Each Gaussian carries, for each part p, a label stored as degree-1 spherical harmonics: a view-independent
value `dc[n, p]` plus three view-dependent coefficients `sh1[n, :, p]`. Seen from camera c the label is
    label_c(n, p) = dc[n, p] + sum_k Y1_k(direction c -> n) * sh1[n, k, p],
composited into label images exactly like colours (engine/masks/contrib.py) and fitted to the 2D masks with
a (smoothed) L1 loss over the pixels the scene covers. The final soft mask reads only `dc`.

What makes it robust where voting (the views' mean) is not:
- view trust: every `certainty_every` steps each view's mask of each part is compared with the rendered
  consensus (IoU); views far below the median IoU (dropped, flipped, bled masks) are down-weighted;
- the view-dependent terms can absorb what one side of the object claims and the other denies;
- neighbour consistency: the least certain Gaussians' labels are pulled toward the mean label of their k
  nearest neighbours. Certainty combines the entropy of a softmax over the label's closeness to the part
  prototypes (background = zeros, part p = e_p), the variance across views of what the (trusted) masks say
  about the Gaussian, and its visibility;
- Gaussians that no view sees (interiors) take, at the end, the distance-weighted mean label of their nearest
  seen Gaussians, so they follow the surface that encloses them.
The step is a preconditioned gradient step: each Gaussian's gradient is divided by its own (trusted) total
compositing weight, so that a Gaussian moves by about `lr` times the weighted average of its residual signs
whatever its size; labels are kept in [0, 1].
Output: soft weights clamp(dc, 0, 1) per part and a suggested threshold (Otsu's, kept within [0.3, 0.7]).

Choices that differ from RoMaP's code: one label channel per part instead of parts as colours; labels start
at 0.5; only the least certain Gaussians are pulled (the certain ones anchor them); view trust is ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..render.sh import sh_basis
from ..scene import GaussianScene
from .contrib import ViewWeights, compositing_weights
from .lift_vote import VISIBILITY_EPS
from .ops import knn_graph
from .views_io import MaskViews, as_view_list


@dataclass
class GalpConfig:
    """Settings of 3D-GALP (defaults tuned at 48-128 px views; see bench/masks.py)."""

    steps: int = 60
    """Preconditioned gradient steps over all views at once (each is two sparse matrix products per view
    batch); full-batch preconditioned steps converge in tens of steps where Adam on view batches needs hundreds."""
    lr: float = 0.15
    """Initial step size in label units (cosine-decayed to lr / 20); labels live in [0, 1]."""
    smooth_l1: float = 0.02
    """Width of the smoothed L1 (Charbonnier) loss, so that exactly fitted pixels give no gradient noise."""
    sh_decay: float = 0.05
    """L2 weight on the view-dependent coefficients: they may explain view disagreement, not the label."""
    knn: int = 16
    """Neighbours used by the consistency loss and the fill of unseen Gaussians."""
    consistency_start: int = 10
    """Step at which the neighbour-consistency loss starts (labels first settle on the render loss)."""
    certainty_every: int = 10
    """Recompute certainty (and the set of uncertain Gaussians) every this many steps."""
    consistency_weight: float = 2.0
    """Weight of the consistency pull relative to the render loss, per Gaussian."""
    uncertain_fraction: float = 0.15
    """Fraction of the seen Gaussians treated as uncertain (the least certain ones)."""
    temperature: float = 0.1
    """Softmax temperature over the negative L1 distances to the part prototypes."""
    view_trust: bool = True
    """Down-weight views whose mask disagrees with the current 3D consensus (dropped or flipped masks)."""


@dataclass
class GalpResult:
    weights: Tensor  # [P, N] soft weights in [0, 1]
    threshold: float  # suggested cut: hard mask = weights > threshold
    uncertainty: Tensor  # [N] in [0, 1], the last certainty estimate (1 = least certain)
    visibility: Tensor  # [N] summed compositing weight over all views (0 = never seen)
    losses: list[float] = field(default_factory=list)  # render loss per step (per covered pixel)
    view_trust: list[Tensor] = field(default_factory=list)  # [C, P] per view batch: final trust in each mask


@dataclass
class _Batch:
    """Fixed data of one batch of views, in the compact form of `ViewWeights` (covered pixels x visible pairs)."""

    weights: ViewWeights
    gauss: Tensor  # [V] Gaussian of each visible (view, Gaussian) pair
    view: Tensor  # [V] view of each pair
    basis: Tensor  # [V, 3] degree-1 SH basis of the camera -> Gaussian direction
    pair_totals: Tensor  # [V] the Gaussian's total compositing weight in that view
    row_view: Tensor  # [R] view of each covered pixel
    alpha: Tensor  # [R] accumulated opacity
    masks: Tensor  # [R, P]
    loss_rows: Tensor  # [R] 1 where the pixel counts in the loss (alpha > 0.5)


def _batch(group: MaskViews, vw: ViewWeights, means: Tensor) -> _Batch:
    centres = group.cameras.centers.float()
    dirs = torch.nn.functional.normalize(means[vw.pair_gauss] - centres[vw.pair_view], dim=-1)
    alpha_rows = vw.rows_of(vw.alpha())[:, 0]
    return _Batch(
        weights=vw,
        gauss=vw.pair_gauss,
        view=vw.pair_view,
        basis=sh_basis(1, dirs)[:, 1:],
        pair_totals=vw.splat_rows(torch.ones(len(vw.row_index), 1))[:, 0],
        row_view=torch.div(vw.row_index, vw.height * vw.width, rounding_mode="floor"),
        alpha=alpha_rows,
        masks=vw.rows_of(group.masks),
        loss_rows=(alpha_rows > 0.5).float(),
    )


def galp(
    scene: GaussianScene,
    views: MaskViews | list[MaskViews],
    *,
    config: GalpConfig | None = None,
    view_weights: list[ViewWeights] | None = None,
) -> GalpResult:
    """Lift the masks of `views` ([C, H, W, P] per batch) to soft per-Gaussian weights [P, N] with 3D-GALP."""
    cfg = config or GalpConfig()
    groups = as_view_list(views)
    if view_weights is None:
        view_weights = [compositing_weights(scene, g.cameras) for g in groups]
    N, P = len(scene), groups[0].num_parts
    means = scene.means.detach().float().cpu()
    batches = [_batch(g, vw, means) for g, vw in zip(groups, view_weights)]
    coverage = max(1.0, sum(float(b.loss_rows.sum()) for b in batches))
    trust = [torch.ones(len(g), P) for g in groups]  # [C, P] per batch: how much each view's mask is believed
    evidence_var, part_vis = _evidence(batches, trust, N)
    visibility = torch.zeros(N)
    for b in batches:
        visibility.index_add_(0, b.gauss, b.pair_totals)
    seen = visibility > VISIBILITY_EPS
    floor = 0.05 * float(visibility[seen].median()) if seen.any() else 1.0

    dc = torch.full((N, P), 0.5, requires_grad=True)
    sh1 = torch.zeros(N, 3, P, requires_grad=True)
    neighbours = knn_graph(means, cfg.knn)
    uncertain = torch.zeros(0, dtype=torch.long)
    uncertainty = torch.where(seen, torch.zeros(N), torch.ones(N))
    losses = []
    for step in range(cfg.steps):
        if step >= cfg.consistency_start and (step - cfg.consistency_start) % cfg.certainty_every == 0:
            if cfg.view_trust:
                trust = [_view_agreement(b, dc.detach(), len(g)) for b, g in zip(batches, groups)]
                evidence_var, part_vis = _evidence(batches, trust, N)
            uncertainty = _uncertainty(dc.detach(), evidence_var, visibility, seen, cfg.temperature)
            uncertain = _least_certain(uncertainty, seen, cfg.uncertain_fraction)
        # Per-Gaussian, per-part preconditioner: the render-loss gradient is a sum over the pixels a Gaussian
        # covers; dividing by its (trusted) weight turns it into a weighted average of residual signs.
        precond = 1.0 / (part_vis + floor)  # [N, P]
        render_loss = dc.new_zeros(())
        for b, omega in zip(batches, trust):
            labels = dc[b.gauss] + (b.basis[:, :, None] * sh1[b.gauss]).sum(1)  # [V, P] label seen in that view
            residual = b.weights.render_pairs(labels) - b.masks * b.alpha[:, None]
            rho = torch.sqrt(residual * residual + cfg.smooth_l1**2) - cfg.smooth_l1
            # Silhouette pixels (alpha <= 0.5) are left out: a 2D mask says little about a pixel that is
            # mostly background, and fitting them would pull rim Gaussians out of their part.
            render_loss = render_loss + (omega[b.row_view] * b.loss_rows[:, None] * rho).sum()
        loss = render_loss + cfg.sh_decay * (part_vis[:, None, :] * sh1 * sh1).sum()
        if len(uncertain) and neighbours.shape[1]:
            pull = dc.detach()[neighbours[uncertain]].mean(dim=1)  # [U, P]
            gap = dc[uncertain] - pull
            nc = torch.sqrt(gap * gap + cfg.smooth_l1**2)
            # Weighted like the preconditioner below, so the pull moves a label by ~lr * weight per step.
            loss = loss + cfg.consistency_weight * ((part_vis[uncertain] + floor) * nc).sum()
        dc_grad, sh_grad = torch.autograd.grad(loss, [dc, sh1])
        lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(cfg.steps, 1))))
        with torch.no_grad():
            dc -= lr * dc_grad * precond
            sh1 -= lr * sh_grad * precond[:, None, :]
            dc.clamp_(0.0, 1.0)
        losses.append(float(render_loss.detach()) / coverage)

    labels = _fill_unseen(dc.detach().clone(), seen, means, cfg.knn)
    weights = labels.clamp(0.0, 1.0).T.contiguous()
    uncertainty = _uncertainty(labels, evidence_var, visibility, seen, cfg.temperature)
    return GalpResult(weights, suggest_threshold(weights), uncertainty, visibility, losses, trust)


@torch.no_grad()
def _view_agreement(batch: _Batch, dc: Tensor, num_views: int) -> Tensor:
    """[C, P] trust in each view's mask of each part: 1 when its IoU with the rendered consensus label
    (view-independent part only) is near the part's median over views, ~0.02 when it is 0.3 lower."""
    rendered = batch.weights.render_pairs(dc[batch.gauss]) / batch.alpha.clamp_min(1e-6)[:, None]
    counted = batch.loss_rows[:, None] > 0
    pred = (rendered > 0.5) & counted
    mask = (batch.masks > 0.5) & counted
    P = dc.shape[1]
    inter = torch.zeros(num_views, P).index_add_(0, batch.row_view, (pred & mask).float())
    union = torch.zeros(num_views, P).index_add_(0, batch.row_view, (pred | mask).float())
    iou = inter / union.clamp_min(1)
    # The typical agreement of a part is the median over the views where the part shows up at all (in the
    # mask or in the rendered consensus); a view where both are empty has nothing to judge and keeps trust 1.
    shows = union > 0
    typical = torch.stack([
        iou[shows[:, p], p].median() if shows[:, p].any() else iou.new_tensor(1.0) for p in range(P)
    ])
    gap = (typical[None] - iou).clamp_min(0)
    trust = torch.exp(-((gap / 0.15) ** 2)).clamp_min(0.01)
    return torch.where(shows, trust, torch.ones_like(trust))


def _evidence(batches: list[_Batch], trust: list[Tensor], N: int) -> tuple[Tensor, Tensor]:
    """Per Gaussian: the trust- and visibility-weighted variance across views of what each view's masks say
    about it (its share of weight inside the mask, summed over parts) [N], and its trusted visibility [N, P]."""
    P = batches[0].masks.shape[-1]
    w_sum, m1, m2 = torch.zeros(N, P), torch.zeros(N, P), torch.zeros(N, P)
    for b, omega in zip(batches, trust):
        share = b.weights.splat_rows(b.masks) / b.pair_totals.clamp_min(1e-12)[:, None]  # [V, P]
        w = b.pair_totals[:, None] * omega[b.view]
        w_sum.index_add_(0, b.gauss, w)
        m1.index_add_(0, b.gauss, w * share)
        m2.index_add_(0, b.gauss, w * share * share)
    mean = m1 / w_sum.clamp_min(1e-12)
    variance = (m2 / w_sum.clamp_min(1e-12) - mean * mean).clamp_min(0).sum(-1)
    return variance, w_sum


@torch.no_grad()
def _uncertainty(dc: Tensor, evidence_var: Tensor, visibility: Tensor, seen: Tensor, temperature: float) -> Tensor:
    """[N] in [0, 1]. Three signals: the normalized entropy of a softmax over the label's closeness to the part
    prototypes (a label between prototypes), the normalized cross-view variance of the evidence (views
    disagree), and low visibility (a Gaussian mostly hidden behind others has little evidence of its own):
        1 - (1 - entropy * (0.1 + variance) / 1.1) * visibility / (visibility + 0.1 * median visibility).
    Unseen Gaussians get 1."""
    N, P = dc.shape
    prototypes = torch.cat([torch.zeros(1, P), torch.eye(P)])  # background, then one per part
    distance = (dc[:, None, :] - prototypes[None]).abs().sum(-1)  # [N, P+1]
    prob = torch.softmax(-distance / temperature, dim=-1)
    entropy = -(prob * prob.clamp_min(1e-12).log()).sum(-1) / math.log(P + 1)
    if not seen.any():
        return torch.ones(N)
    variance = (evidence_var / evidence_var[seen].max().clamp_min(1e-12)).clamp(0, 1)
    confidence = visibility / (visibility + 0.1 * visibility[seen].median())
    score = 1.0 - (1.0 - entropy * (0.1 + variance) / 1.1) * confidence
    return torch.where(seen, score, torch.ones_like(score))


def _least_certain(uncertainty: Tensor, seen: Tensor, fraction: float) -> Tensor:
    """Indices of all unseen Gaussians plus the `fraction` least certain seen ones."""
    seen_idx = seen.nonzero().flatten()
    count = int(round(fraction * len(seen_idx)))
    worst = seen_idx[torch.topk(uncertainty[seen_idx], count).indices] if count else seen_idx[:0]
    return torch.cat([(~seen).nonzero().flatten(), worst])


def _fill_unseen(labels: Tensor, seen: Tensor, means: Tensor, k: int) -> Tensor:
    """Give every unseen Gaussian the inverse-distance-weighted mean label of its k nearest seen Gaussians
    (an interior Gaussian takes the label of the surface around it)."""
    from scipy.spatial import cKDTree

    unseen = (~seen).nonzero().flatten()
    seen_idx = seen.nonzero().flatten()
    if len(unseen) == 0 or len(seen_idx) == 0:
        return labels
    k = min(k, len(seen_idx))
    tree = cKDTree(means[seen_idx].numpy().astype(np.float64))
    dist, idx = tree.query(means[unseen].numpy().astype(np.float64), k=k)
    dist = torch.from_numpy(np.asarray(dist, dtype=np.float32).reshape(len(unseen), k))
    idx = torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(len(unseen), k))
    w = 1.0 / dist.clamp_min(1e-6)
    labels[unseen] = (w[..., None] * labels[seen_idx[idx]]).sum(1) / w.sum(1, keepdim=True)
    return labels


def suggest_threshold(weights: Tensor, lo: float = 0.3, hi: float = 0.7) -> float:
    """Otsu's threshold of the soft weights (all parts pooled), kept within [lo, hi]."""
    values = weights.flatten().clamp(0, 1).numpy()
    hist, edges = np.histogram(values, bins=64, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    total = hist.sum()
    if total == 0:
        return 0.5
    w0 = np.cumsum(hist)
    w1 = total - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    cut = float(edges[1:][int(np.argmax(between))])
    return float(min(hi, max(lo, cut)))
