"""The numbers of one edit for the batch manifest and `python -m engine evaluate`: weight-free measurements
against the input (PSNR inside/outside the part, spill vs the input, Gaussian counts), PSNR against a
ground-truth edited scene when one is given, and CLIP scores (clip.py) when a CLIP model is.

All images are taken on the held-out ring around the part (views.py). The part's coverage of a pixel is the
hard mask (weight > threshold: the Gaussians an edit may change) composited like a colour, the larger of the
input's and the output's, so "inside" covers where the part was and where it grew to; "outside" is the rest
(pixels weighted by coverage and 1 − coverage). A PSNR over an empty region is None (metrics.psnr).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .metrics import frozen_rows_changed, psnr, spill_vs_input
from .views import coverage, part_cameras, render_views


@dataclass(frozen=True)
class EvalOptions:
    """How edits are evaluated (`--eval-views`, `--eval-resolution`, `--clip` of `batch` and `evaluate`)."""

    views: int = 8
    """Views on the held-out ring around the part (views.py)."""
    resolution: int = 224
    """Square render size of those views (CLIP ViT-L/14 reads 224 px)."""
    clip: str | None = None
    """CLIP model (hub id or local folder) for the CLIP and CLIP-direction scores; None: not computed."""

    def check(self) -> None:
        if not 1 <= self.views <= 360:
            raise ValueError(f"evaluation views must be in [1, 360], got {self.views}")
        if not 16 <= self.resolution <= 2048:
            raise ValueError(f"evaluation resolution must be in [16, 2048], got {self.resolution}")


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
    cameras = part_cameras(original, mask, config, views=options.views, resolution=options.resolution)
    background = tuple(config.background)
    before = render_views(original, cameras, background)
    after = render_views(edited, cameras, background)
    region = torch.maximum(coverage(original, mask > threshold, cameras),
                           coverage(edited, edited_mask > threshold, cameras))
    metrics: dict[str, Any] = {
        "gaussians_in": len(original),
        "gaussians_out": len(edited),
        "masked_in": int((mask > threshold).sum()),
        "masked_out": int((edited_mask > threshold).sum()),
        "frozen_changed": frozen_rows_changed(original, mask, edited, edited_mask, threshold),
        "psnr_inside": _round(psnr(after, before, region)),
        "psnr_outside": _round(psnr(after, before, 1.0 - region)),
        "spill_vs_input": round(spill_vs_input(before, after, region), 6),
        "eval_views": options.views,
        "eval_resolution": options.resolution,
    }
    if target is not None:
        wanted = render_views(target, cameras, background)
        metrics["psnr_target"] = _round(psnr(after, wanted))
        metrics["psnr_target_inside"] = _round(psnr(after, wanted, region))
        metrics["psnr_target_input"] = _round(psnr(before, wanted))
    if clip is not None:
        from .clip import clip_metrics

        metrics.update(clip_metrics(clip, before, after, prompt, source_prompt))
    return metrics, {"before": before, "after": after, "region": region}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
