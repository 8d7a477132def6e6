"""3D-GALP's fill: labels for the Gaussians the views saw weakly or not at all, from their neighbours.

After the fit (engine/masks/galp.py), a well observed label stays; a weakly seen one is filled from its
confidently labelled kNN neighbours (`_fill_weak`, a certainty-weighted normalized convolution), tending where
nobody observed well to a faint prior (`_supported`: its own vote only where the part is confidently near);
never-seen interiors take the label of the nearest confident surface (`_fill_unseen`). Both fills may weigh
neighbours by colour likeness, as far as colour predicts the labels in this scene (`_colour_kernel`).
The names keep their underscore: they are the internals of the galp*.py family, not for other modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..scene import GaussianScene, sh0_to_rgb
from .ops import nearest


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
