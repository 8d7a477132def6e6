"""The measurements of an edit, on images and Gaussians already at hand (no rendering here: views.py renders).

- **PSNR** (`psnr`): 10·log10(1 / MSE) over RGB in [0, 1], optionally over pixels weighted by a region. Two
  answers are fixed for everyone: identical images give `PSNR_CAP` (100 dB) rather than infinity, so results
  stay plain JSON and averages finite; a region with no weight gives None — nothing to measure, which is
  neither perfect nor bad — and whoever prints or averages results leaves it out.
- **spill vs the input** (`spill_vs_input`, no ground truth needed): a part that covers a pixel with weight c
  can change that pixel's colour by at most c (colours are in [0, 1] and compositing is linear in them), so a
  pixel whose colour moved by more than c + `SPILL_VS_INPUT_TOLERANCE` changed for a reason other than the part;
  the share of the pixels outside the part (c < `OUTSIDE_COVERAGE`) where that happened.
- **spill vs the target** (`spill_vs_target`, when the ideal result is known): the share of the pixels outside
  the part whose colour differs from the target's by more than `SPILL_VS_TARGET_TOLERANCE` in any channel —
  what the user sees as "the edit leaked".
- **floaters** (`count_floaters`): Gaussians the edit optimized or created, opaque enough to see
  (> `FLOATER_OPACITY`), whose centres lie outside the edit region — Gaussians that went where no edit was asked.
- **frozen rows** (`frozen_rows_changed`): Gaussians outside the mask that differ (the edit promises none).

A spill over no outside pixels is 0.0: nothing there could leak.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PSNR_CAP = 100.0  # dB: what identical images score
_MSE_AT_CAP = 10 ** (-PSNR_CAP / 10)
SPILL_VS_INPUT_TOLERANCE = 2.0 / 255.0  # colour change (max over channels) beyond the part's coverage that counts
OUTSIDE_COVERAGE = 0.5  # pixels the part covers less than this are "outside the part" for spill vs the input
SPILL_VS_TARGET_TOLERANCE = 2.0 / 255.0  # colour difference (any channel) from the target that counts
FLOATER_OPACITY = 0.05  # Gaussians fainter than this cannot be seen: never floaters


def psnr(a: Tensor, b: Tensor, weight: Tensor | None = None) -> float | None:
    """PSNR in dB of images `a` vs `b` ([..., 3] in [0, 1]) over the pixels weighted by `weight` ([..., 1], bool
    or float; None: every pixel). `PSNR_CAP` when they match (MSE ≤ 1e-10); None when the weights sum to 0."""
    err = (a.double() - b.double()).pow(2)
    if weight is None:
        if err.numel() == 0:
            return None
        mse = float(err.mean())
    else:
        w = weight.to(device=err.device, dtype=torch.float64).expand_as(err)
        total = float(w.sum())
        if total <= 0.0:
            return None
        mse = float((err * w).sum()) / total
    if mse <= _MSE_AT_CAP:
        return PSNR_CAP
    return 10.0 * math.log10(1.0 / mse)


def spill_vs_input(
    before: Tensor,  # [V, H, W, 3] the input's renders
    after: Tensor,  # [V, H, W, 3] the edited scene's renders of the same views
    coverage: Tensor,  # [V, H, W, 1] the part's coverage of each pixel, in [0, 1]
) -> float:
    """Share of the pixels outside the part whose colour moved by more than the part's coverage explains."""
    outside = coverage < OUTSIDE_COVERAGE
    moved = ((after - before).abs().amax(dim=-1, keepdim=True) > coverage + SPILL_VS_INPUT_TOLERANCE) & outside
    return float(moved.sum()) / max(int(outside.sum()), 1)


def spill_vs_target(
    result: Tensor,  # [V, H, W, 3] the edited scene's renders
    target: Tensor,  # [V, H, W, 3] the ideal result's renders of the same views
    part: Tensor,  # [V, H, W] bool: every pixel the edit was meant to change
) -> float:
    """Share of the pixels outside `part` whose colour is off the target's by more than the tolerance."""
    outside = ~part
    if not bool(outside.any()):
        return 0.0
    off = (result - target).abs().amax(dim=-1) > SPILL_VS_TARGET_TOLERANCE
    return float(off[outside].float().mean())


def count_floaters(result, edited: Tensor, region) -> int:
    """Visible Gaussians of `result` (a GaussianScene) among the `edited` rows ([N] bool: optimized or created by
    the edit) whose centres `region` (an EditRegion: `contains(means [N, 3]) -> [N] bool`) does not contain."""
    visible = edited & (torch.sigmoid(result.opacities.detach()) > FLOATER_OPACITY)
    return int((visible & ~region.contains(result.means.detach())).sum())


def frozen_rows_changed(original, mask: Tensor, edited, edited_mask: Tensor, threshold: float) -> int | None:
    """How many Gaussians outside the mask differ between input and output (the edit promises 0); None when the
    unmasked rows cannot be matched (their counts differ)."""
    keep_in = mask <= threshold
    keep_out = edited_mask <= threshold
    if int(keep_in.sum()) != int(keep_out.sum()):
        return None
    differ = torch.zeros(int(keep_in.sum()), dtype=torch.bool)
    for (name, before), (_, after) in zip(original.items(), edited.items()):
        a, b = before.detach()[keep_in].cpu(), after.detach()[keep_out].cpu()
        differ |= (a != b).reshape(a.shape[0], -1).any(dim=1)
    return int(differ.sum())
