"""Baseline lifting of 2D masks to 3D: visibility-weighted voting.

A Gaussian's weight for a part is the share of its compositing weight, summed over all views, that falls
inside that part's 2D masks:  vote[n] = sum_c sum_p mask_c(p) w_c(p, n) / sum_c sum_p w_c(p, n).
It is the mean of the views' opinions, so every wrong view moves it; Gaussians that no view sees get 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene import GaussianScene
from .compositing import ViewWeights
from .lift_scope import lift_scope
from .views_io import MaskViews, as_view_list

# A Gaussian whose summed compositing weight over all views is below this is treated as unseen.
VISIBILITY_EPS = 1e-3


@dataclass
class VoteResult:
    weights: Tensor  # [P, N] soft weights in [0, 1]
    visibility: Tensor  # [N] summed compositing weight over all views (0 = never seen)
    threshold: float = 0.5


def vote(
    scene: GaussianScene,
    views: MaskViews | list[MaskViews],
    *,
    view_weights: list[ViewWeights] | None = None,
) -> VoteResult:
    """Lift the masks of `views` ([C, H, W, P] per batch) to per-Gaussian weights [P, N] by voting.

    view_weights: the `compositing_weights` of each batch, when the caller already has them (then every
    Gaussian is lifted); without them the lift works in the masks' neighbourhood only (lift_scope.py).
    """
    groups = as_view_list(views)
    if view_weights is None:
        scope = lift_scope(scene, groups)
        if len(scope.index) == 0:
            return VoteResult(torch.zeros(groups[0].num_parts, len(scene)), torch.zeros(len(scene)))
        inner = vote(scene.subset(scope.index), groups, view_weights=scope.weights)
        return VoteResult(scope.lifted(inner.weights), scope.expand(inner.visibility), inner.threshold)
    inside = torch.zeros(len(scene), groups[0].num_parts)
    total = torch.zeros(len(scene))
    for group, vw in zip(groups, view_weights):
        inside += vw.splat(group.masks).sum(0)
        total += vw.totals().sum(0)
    seen = total > VISIBILITY_EPS
    weights = torch.where(seen[:, None], inside / total.clamp_min(VISIBILITY_EPS)[:, None], torch.zeros_like(inside))
    return VoteResult(weights.clamp(0.0, 1.0).T.contiguous(), total)
