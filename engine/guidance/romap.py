"""RoMaP's regularized SDS: masked SDS plus an L1 anchor toward part-edited 2D images.

loss = SDS(images, mask2d) + anchor_weight * sum(m * |images - anchors|) / B

The anchors are the same views edited in 2D by scheduled latent mixing (slamp.py): a complete, coherent picture
of the part after the edit, which SDS alone (mode-seeking, noisy) reaches slowly or not at all. The anchor is a
per-view sum, averaged over views like the SDS surrogate, so `anchor_weight` is the pull per pixel and does not
depend on the resolution. Anchors are expensive (a short DDIM run per view): the edit loop keeps them per view
and refreshes them every K steps with `make_anchors`; a call without `anchors` makes them on the spot.

"Gaussian prior removal" (resetting the masked Gaussians before the edit) changes the scene, not the loss: it
lives in the edit loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import DiffusionModel, LossOutput
from .sds import SDSLoss, check_prompt, float_info
from .slamp import SLaMPConfig, part_edit_images
from .timesteps import TimestepSchedule


@dataclass
class RoMaPLoss:
    """Masked SDS toward `prompt` + L1 anchor inside the mask. Needs `anchors`, or `originals` to make them."""

    model: DiffusionModel
    prompt: str
    guidance_scale: float = 100.0
    """Classifier-free guidance scale of the SDS term."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    anchor_weight: float = 1.0
    """lambda: weight of the L1 anchor term (per pixel and channel inside the mask)."""
    slamp: SLaMPConfig = field(default_factory=SLaMPConfig)
    """How anchors are made (see slamp.py)."""

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)
        if self.anchor_weight < 0:
            raise ValueError(f"anchor_weight must be >= 0, got {self.anchor_weight}")
        self.sds = SDSLoss(self.model, self.prompt, self.guidance_scale, self.timesteps)

    def make_anchors(
        self,
        originals: Tensor,  # [B, H, W, 3] in [0, 1], the views before the edit
        mask2d: Tensor | None,  # [B, H, W, 1]; None = the whole view
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Part-edited images of these views, [B, H, W, 3] in [0, 1], no graph."""
        if mask2d is None:
            mask2d = torch.ones_like(originals[..., :1])
        return part_edit_images(self.model, originals, mask2d, self.prompt, config=self.slamp, generator=generator)

    def __call__(
        self,
        images: Tensor,  # [B, H, W, 3] in [0, 1]
        *,
        step: int,
        total_steps: int,
        mask2d: Tensor | None = None,  # [B, H, W, 1]; None = the whole view
        originals: Tensor | None = None,  # [B, H, W, 3], used only to make anchors when none are given
        anchors: Tensor | None = None,  # [B, H, W, 3]
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Draws t and the noise of the SDS term from `generator` first, then (if needed) the anchors' noise."""
        sds_loss, sds_info = self.sds(images, step=step, total_steps=total_steps, mask2d=mask2d, generator=generator)
        made = anchors is None
        if made:
            if originals is None:
                raise ValueError("RoMaP needs anchors=... or the original renders (originals=...) to make them")
            anchors = self.make_anchors(originals, mask2d, generator=generator)
        if anchors.shape != images.shape:
            raise ValueError(f"anchors {tuple(anchors.shape)} must match images {tuple(images.shape)}")
        weight = torch.ones_like(images[..., :1]) if mask2d is None else mask2d.to(images.dtype)
        anchor = (weight * (images - anchors.detach().to(images)).abs()).sum() / images.shape[0]
        loss = sds_loss + self.anchor_weight * anchor
        info = {**sds_info, **float_info(loss=loss, anchor=anchor), "anchors_made": float(made)}
        return LossOutput(loss, info)
