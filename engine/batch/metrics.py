"""Weight-free measurements of an edit: PSNR inside/outside the part vs the input, spill, Gaussian counts, and
PSNR against a ground-truth edited scene when one is given. CLIP scores (clip.py) are added when a CLIP model is.

All image metrics use one fixed ring of views around the part (`eval_cameras`): the edit's own `PartOrbit`
framing, at mid elevation, offset by half a step from RoMaP's anchor ring so no view is one the edit trained
on. The part's coverage of a pixel is the hard mask (weight > threshold: the Gaussians an edit may change)
composited like a colour, the larger of the input's and the output's, so "inside" covers where the part was and
where it grew to; "outside" is the rest (pixels weighted by coverage and 1 − coverage).

Spill: a part that covers a pixel with weight c can change that pixel's colour by at most c (colours are in
[0, 1] and compositing is linear in them), so a pixel whose colour moved by more than c + 2/255 changed for a
reason other than the part; spill is the share of the pixels outside the part (c < 0.5) where that happened.

PSNR is 10·log10(1 / MSE) over RGB in [0, 1], weighted per pixel; identical images give `PSNR_CAP` (100 dB)
instead of infinity so the manifest stays plain JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

PSNR_CAP = 100.0
SPILL_TOLERANCE = 2.0 / 255.0  # colour change (max over channels) beyond the part's coverage that counts
OUTSIDE_LEVEL = 0.5  # pixels with less coverage than this are "outside the part" for spill


@dataclass(frozen=True)
class EvalOptions:
    """How edits are evaluated (`--eval-views`, `--eval-resolution`, `--clip` of `batch` and `evaluate`)."""

    views: int = 8
    """Views on the fixed evaluation ring around the part."""
    resolution: int = 224
    """Square render size of those views (CLIP ViT-L/14 reads 224 px)."""
    clip: str | None = None
    """CLIP model (hub id or local folder) for the CLIP and CLIP-direction scores; None: not computed."""

    def check(self) -> None:
        if not 1 <= self.views <= 360:
            raise ValueError(f"evaluation views must be in [1, 360], got {self.views}")
        if not 16 <= self.resolution <= 2048:
            raise ValueError(f"evaluation resolution must be in [16, 2048], got {self.resolution}")


def weighted_psnr(a: Tensor, b: Tensor, weight: Tensor) -> float | None:
    """PSNR of `a` vs `b` ([V, H, W, 3] in [0, 1]) over pixels weighted by `weight` [V, H, W, 1]; None if the
    weights are all zero."""
    total = float(weight.sum())
    if total <= 0:
        return None
    mse = float((((a - b) ** 2) * weight).sum()) / (3.0 * total)
    if mse <= 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return 10.0 * math.log10(1.0 / mse)


def eval_cameras(scene, mask: Tensor, config, options: EvalOptions):
    """The fixed evaluation views around the masked part of `scene` (an `EditConfig` gives the framing)."""
    from dataclasses import replace

    from engine.edit import PartOrbit

    orbit = PartOrbit.around(scene.detach(), mask.to(scene.device), replace(config, resolution=options.resolution))
    return orbit.ring(options.views, offset_deg=180.0 / options.views)


def render_views(scene, cameras, background) -> Tensor:
    """[V, H, W, 3] colour renders."""
    from engine.render import render

    with torch.no_grad():
        return render(scene.detach(), cameras, background=background).rgb.clamp(0, 1)


def render_mask(scene, mask: Tensor, cameras) -> Tensor:
    """[V, H, W, 1] the per-Gaussian mask composited like a colour: the part's coverage of each pixel."""
    from engine.render import render

    with torch.no_grad():
        return render(scene.detach(), cameras, colors=mask.float().to(scene.device)[:, None]).rgb.clamp(0, 1)


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


def edit_metrics(
    original,  # GaussianScene, the input
    mask: Tensor,  # [N] input mask weights
    edited,  # GaussianScene, the output
    edited_mask: Tensor,  # [N'] output mask weights
    config,  # EditConfig of the edit (framing, threshold, background)
    options: EvalOptions,
    *,
    target=None,  # GaussianScene: the ground-truth edited scene, if known
    clip=None,  # ClipScorer, if CLIP scores are wanted
    prompt: str = "",
    source_prompt: str = "",
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(metrics, images): the numbers for the manifest and the renders they came from (`before`, `after`, and
    `region` [V, H, W, 1]), so a caller can also score them with CLIP or save them."""
    mask = mask.float().to(original.device)
    edited_mask = edited_mask.float().to(edited.device)
    threshold = config.mask_threshold
    cameras = eval_cameras(original, mask, config, options)
    background = tuple(config.background)
    before = render_views(original, cameras, background)
    after = render_views(edited, cameras, background)
    region = torch.maximum(render_mask(original, (mask > threshold).float(), cameras),
                           render_mask(edited, (edited_mask > threshold).float(), cameras))
    outside = region < OUTSIDE_LEVEL
    moved = ((after - before).abs().amax(dim=-1, keepdim=True) > region + SPILL_TOLERANCE) & outside
    metrics: dict[str, Any] = {
        "gaussians_in": len(original),
        "gaussians_out": len(edited),
        "masked_in": int((mask > threshold).sum()),
        "masked_out": int((edited_mask > threshold).sum()),
        "frozen_changed": frozen_rows_changed(original, mask, edited, edited_mask, threshold),
        "psnr_inside": _round(weighted_psnr(after, before, region)),
        "psnr_outside": _round(weighted_psnr(after, before, 1.0 - region)),
        "spill": round(float(moved.sum()) / max(int(outside.sum()), 1), 6),
        "eval_views": options.views,
        "eval_resolution": options.resolution,
    }
    if target is not None:
        wanted = render_views(target, cameras, background)
        everywhere = torch.ones_like(region)
        metrics["psnr_target"] = _round(weighted_psnr(after, wanted, everywhere))
        metrics["psnr_target_inside"] = _round(weighted_psnr(after, wanted, region))
        metrics["psnr_target_input"] = _round(weighted_psnr(before, wanted, everywhere))
    if clip is not None:
        from .clip import clip_metrics

        metrics.update(clip_metrics(clip, before, after, prompt, source_prompt))
    return metrics, {"before": before, "after": after, "region": region}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
