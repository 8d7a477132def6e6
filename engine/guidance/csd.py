"""Classifier Score Distillation (CSD; Yu et al., "Text-to-3D with Classifier Score Distillation", ICLR 2024).

SDS with classifier-free guidance decomposes (CSD's notation, eps_hat = eps(y) + w (eps(y) - eps(0))) into

    eps_hat - eps = [eps(z_t; y) - eps]  +  w [eps(z_t; y) - eps(z_t; "")]
                     generative prior        classifier score (an implicit classifier's gradient)

and CSD's finding is that the second term alone drives text-to-3D; the first, with its random-noise part, is
dropped. In this project's convention (diffusers', eps_hat = eps(0) + s (eps(y) - eps(0))), w = s - 1, so

    grad = w(t) * (s - 1) * (eps(z_t, t, y) - eps(z_t, t, "")),      w(t) = SDS's weight on the family

Guidance scale 1 is exactly zero, by construction. Default s = 2 (w = 1): the released configs weight the
classifier score by 1 (their `cond_scale` 1, `uncond_scale` -1); under Adam only the direction matters. The
paper's annealed negative prompt is not included (the pure classifier score).

On a weight-free prior CSD is zero everywhere: those priors have one distribution per prompt, so the conditional
and unconditional predictions coincide. The edit refuses that pairing (engine.edit.config); the tests check the
formula on a two-distribution Gaussian prior instead.

Model families: 1 - abar_t on the diffusion family; on a rectified-flow model (SD3 class) the same formula on its
exact epsilon view with w = 1 / (1 - s) (`sds.distil_weight`), i.e. (s - 1) (v(y) - v("")): CFG's direction on
the velocity. It applies to both; it does not to the weight-free priors (refused, below).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import DiffusionModel, LossOutput
from .prepare import distil_renders, masked, per_view
from .sds import add_noise, check_prompt, distil_weight
from .timesteps import TimestepSchedule


def classifier_score(model: DiffusionModel, latents_t: Tensor, t: Tensor, prompt: str, negative: str = "") -> Tensor:
    """eps(z_t, t, prompt) - eps(z_t, t, negative), [B, C, h, w] float32, no graph (two unguided passes)."""
    with torch.no_grad():
        eps_c = model.predict_noise(latents_t, t, model.condition(prompt), guidance_scale=1.0)
        eps_u = model.predict_noise(latents_t, t, model.condition(negative), guidance_scale=1.0)
    return eps_c - eps_u


@dataclass
class CSDLoss:
    """Masked classifier score distillation toward `prompt`; a `GuidanceLoss` (originals, anchors ignored)."""

    model: DiffusionModel
    prompt: str
    guidance_scale: float = 2.0
    """s in eps(0) + s (eps(y) - eps(0)); the classifier score is weighted by s - 1 (2: weight 1, CSD's)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)

    def gradient(self, latents: Tensor, t: Tensor, noise: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """w(t) (s - 1) (eps(y) - eps("")) at z_t = noised `latents` [B, C, h, w], times the mask; no graph."""
        abar = self.model.alphas_cumprod
        latents_t = add_noise(latents.detach().float(), noise, abar[t])
        score = classifier_score(self.model, latents_t, t, self.prompt)
        grad = per_view(distil_weight(self.model, t), score) * (self.guidance_scale - 1.0) * score
        return masked(grad, mask)

    def __call__(self, images: Tensor, *, step: int, total_steps: int, mask2d: Tensor | None = None,
                 originals: Tensor | None = None, anchors: Tensor | None = None,
                 generator: torch.Generator | None = None) -> LossOutput:
        """images [B, H, W, 3]: draws t (one per view), then the noise, from `generator` (as SDS)."""
        return distil_renders(self, images, mask2d, step=step, total_steps=total_steps, generator=generator,
                              name="csd")
