"""Delta denoising score (DDS, Hertz et al. 2023): edit toward a target prompt relative to a source prompt.

The source prompt describes the original render of a view, the target prompt the wanted result. With the same
noise eps and timestep t for both,
    grad = w(t) * (eps_hat(z_t, t, target) - eps_hat(zsrc_t, t, source))
where z are the current render's latents and zsrc the original's. The noisy, prompt-independent part of the SDS
gradient cancels, so only the difference the prompts make remains; w(t) = 1 - abar_t as in SDS so the methods
share learning rates. The same prompt text means the same condition: with source == target and the render still
equal to the original, the gradient is exactly zero (and so stays zero).

DDS is the difference of two SDS gradients with shared noise and t (the paper's derivation). A model family
with its own residual (`sds.score_residual`; the rectified-flow model) gets exactly that difference:
w(s) (v_hat_target(x_s) - v_hat_source(xsrc_s) + z - zsrc), whose noise terms cancel likewise (the epsilon-form
DDS of the same model is (1 - abar)(1 - s) times it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import DiffusionModel, LossOutput, randn
from .native_size import to_model_size
from .sds import (
    add_noise, check_images, check_prompt, draw_timesteps, latent_mask_like, score_residual, sds_weight,
    surrogate_output,
)
from .timesteps import TimestepSchedule


@dataclass
class DDSLoss:
    """Masked DDS from `source_prompt` to `prompt`. Needs `originals` (the views before the edit)."""

    model: DiffusionModel
    prompt: str
    source_prompt: str
    guidance_scale: float = 7.5
    """Classifier-free guidance scale; DDS works at ordinary scales (the DDS paper used 7.5)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)
        self.source_prompt = check_prompt(self.source_prompt, "source prompt (DDS needs one)")

    def gradient(
        self,
        latents: Tensor,  # [B, C, h, w] current render
        source_latents: Tensor,  # [B, C, h, w] original render
        t: Tensor,  # [B] long
        noise: Tensor,  # [B, C, h, w]
        *,
        mask: Tensor | None = None,  # [B, 1, h, w]
    ) -> Tensor:
        """w(t) (eps_hat_target(z_t) - eps_hat_source(zsrc_t)) * mask, float32, no graph."""
        model = self.model
        with torch.no_grad():
            source_latents = source_latents.detach().float()
            target_cond = model.condition(self.prompt)
            if self.source_prompt == self.prompt:
                source_cond = target_cond
            else:
                source_cond = model.condition(self.source_prompt, original=source_latents)
            if hasattr(model, "score_residual"):  # a family with its own residual: the difference of its SDS terms
                grad = (score_residual(model, latents, noise, t, target_cond, guidance_scale=self.guidance_scale)
                        - score_residual(model, source_latents, noise, t, source_cond,
                                         guidance_scale=self.guidance_scale))
            else:
                alpha_bar = model.alphas_cumprod[t]
                eps_target = model.predict_noise(
                    add_noise(latents.detach().float(), noise, alpha_bar), t, target_cond,
                    guidance_scale=self.guidance_scale,
                )
                eps_source = model.predict_noise(
                    add_noise(source_latents, noise, alpha_bar), t, source_cond, guidance_scale=self.guidance_scale,
                )
                grad = sds_weight(model.alphas_cumprod, t).reshape(-1, 1, 1, 1) * (eps_target - eps_source)
            if mask is not None:
                grad = grad * mask
        return grad

    def __call__(
        self,
        images: Tensor,  # [B, H, W, 3] in [0, 1]
        *,
        step: int,
        total_steps: int,
        mask2d: Tensor | None = None,  # [B, H, W, 1]
        originals: Tensor | None = None,  # [B, H, W, 3]
        anchors: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Draws t (one per view), then the noise, from `generator` in that order."""
        if originals is None:
            raise ValueError("DDS needs the original renders of the views (originals=...)")
        if originals.shape != images.shape:
            raise ValueError(f"originals {tuple(originals.shape)} must match images {tuple(images.shape)}")
        originals, _ = to_model_size(self.model, originals)
        images, mask2d = to_model_size(self.model, images, mask2d)
        check_images(images, self.model)
        latents = self.model.encode_images(images)
        with torch.no_grad():
            source_latents = self.model.encode_images(originals.detach())
        t = draw_timesteps(self.timesteps, self.model, latents, step=step, total_steps=total_steps, generator=generator)
        noise = randn(tuple(latents.shape), generator=generator, device=latents.device)
        grad = self.gradient(latents, source_latents, t, noise, mask=latent_mask_like(mask2d, latents))
        return surrogate_output(latents, grad, t, self.model, "dds")
