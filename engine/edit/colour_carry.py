"""Carry a recolour's learned colour change to the part's poorly observed Gaussians.

Score distillation moves a Gaussian's colour only as far as the gradients it received: small, thin or rarely
visible Gaussians (panel lines at 128 px, the underside of a hand) get little and keep patches of the old
colour, which shows from the sides, from below and at higher resolution. As 3D-GALP fills weakly seen labels
from confidently labelled neighbours (engine/masks/galp_fill.py), each masked Gaussian here gets the colour its
well observed surroundings imply, weighted by how little it was observed itself:

- **exposure** [M]: the colour gradient each row received over the edit (the sum of |d loss / d sh0| per step,
  accumulated by `ColourExposure`); its **confidence** is exposure / `reference` (a share of the part's median
  exposure), clipped to 1;
- **prediction**: the part's colour change as one affine map of the old colour, fitted by confidence-weighted
  least squares on the part (a recolour that keeps shading is affine in the old colour: dark panel lines become
  dark blue, not the blue of the bright surface next to them), plus the confidence-weighted mean residual of that
  map among the row's k nearest masked neighbours (a local change the map misses, e.g. a texture);
- each row's new colour is confidence x its own learned colour + (1 - confidence) x the prediction; the higher
  SH bands take the neighbours' mean change the same way.

Only colour moves: positions, scales, rotations and opacities are not inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..masks.ops import nearest


class ColourExposure:
    """The colour gradient each trainable row has received so far (call `add` after every backward)."""

    def __init__(self, num: int, device) -> None:
        self.total = torch.zeros(num, dtype=torch.float64, device=device)  # [M]

    def add(self, sh0_grad: Tensor | None) -> None:  # [M, 1, 3]
        if sh0_grad is not None:
            self.total += sh0_grad.detach().flatten(1).norm(dim=1).double()


def confidence(exposure: Tensor, share: float = 0.5) -> Tensor:  # [M] -> [M] in [0, 1]
    """exposure / (share x the median exposure of the exposed rows), clipped to 1: most rows count fully, a
    row that got a small fraction of the typical gradient mostly takes its neighbours' change."""
    exposed = exposure[exposure > 0]
    if exposed.numel() == 0:
        return torch.zeros_like(exposure)
    reference = share * float(exposed.median())
    return (exposure / max(reference, 1e-30)).clamp(0.0, 1.0)


def carry_colour(
    means: Tensor,  # [M, 3] the masked rows' centres
    old_sh0: Tensor,  # [M, 1, 3] colour before the edit
    new_sh0: Tensor,  # [M, 1, 3] colour the edit learned
    old_shN: Tensor,  # [M, K, 3]
    new_shN: Tensor,  # [M, K, 3]
    conf: Tensor,  # [M] in [0, 1]
    *,
    neighbours: int = 16,
    ridge: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """(sh0 [M, 1, 3], shN [M, K, 3]) after carrying the change to the weakly observed rows (module docstring)."""
    num = means.shape[0]
    if num < 2 or float(conf.sum()) <= 0:
        return new_sh0, new_shN
    c = conf.to(new_sh0.dtype)
    x = torch.cat([old_sh0[:, 0], torch.ones(num, 1, dtype=old_sh0.dtype, device=old_sh0.device)], dim=1)  # [M, 4]
    y = new_sh0[:, 0]  # [M, 3]
    gram = (x * c[:, None]).T @ x + ridge * float(c.sum()) * torch.eye(4, dtype=x.dtype, device=x.device)
    gram[3, 3] -= ridge * float(c.sum())  # the offset is not shrunk
    affine = torch.linalg.solve(gram, (x * c[:, None]).T @ y)  # [4, 3]
    mapped = x @ affine  # [M, 3]
    k = min(neighbours, num - 1)
    everyone = torch.arange(num)
    _, idx = nearest(means, everyone, everyone, k + 1)  # [M, k + 1], each row itself first
    idx = idx[:, 1:].to(means.device)
    w = c[idx]  # [M, k]
    wsum = w.sum(dim=1, keepdim=True)  # [M, 1]
    has = wsum > 1e-9
    local = ((w[..., None] * (y - mapped)[idx]).sum(dim=1) / wsum.clamp_min(1e-9)) * has  # [M, 3]
    predicted = mapped + local
    sh0 = c[:, None] * y + (1.0 - c[:, None]) * predicted
    dN = new_shN - old_shN
    carried = (w[..., None, None] * dN[idx]).sum(dim=1) / wsum[..., None].clamp_min(1e-9) * has[..., None]
    shN = c[:, None, None] * new_shN + (1.0 - c[:, None, None]) * (old_shN + carried)
    return sh0[:, None, :], shN
