"""Noise-Free Score Distillation (NFSD; Katzir, Patashnik, Cohen-Or, Lischinski, ICLR 2024).

NFSD splits the unconditional prediction of SDS into a "domain" direction delta_D (toward real images) and a
noise direction delta_N, and keeps the guidance's "condition" direction delta_C = eps(z_t; y) - eps(z_t; ""):

    eps_hat = eps(z_t; "") + s delta_C = delta_D + delta_N + s delta_C

SDS subtracts the sampled noise and is left with (delta_N - eps): large, random, and the reason SDS needs
s ~ 100. NFSD drops it and distils only the domain and condition directions, at a nominal s = 7.5:

    delta_D = eps(z_t; "")                             for t < 200 (of 1000): little noise left to remove, the
                                                       unconditional prediction is mostly the domain correction
            = eps(z_t; "") - eps(z_t; p_neg)           otherwise: the noise, common to both, cancels
    grad    = w(t) * (delta_D + s * delta_C),          w(t) = SDS's weight on the model's family

with the paper's negative prompt p_neg (`NEGATIVE_PROMPT`). Where t >= 200 and p_neg is the empty prompt,
delta_D = 0 and NFSD is exactly SDS's guidance term w(t) s delta_C (the test checks that identity).

Cost: three unguided passes per view when t >= 200 (y, "", p_neg), two below. On a weight-free prior (one
distribution per prompt) delta_C and the t >= 200 delta_D vanish: only the t < 200 branch pushes there.

Model families. Diffusion family: w(t) = 1 - abar_t, the paper's. Rectified flow (SD3 class): the formula
applies unchanged through the model's exact epsilon view (flow_model.py), with w(t) = 1 / (1 - s)
(`sds.distil_weight`), which makes each epsilon difference the velocity difference RFDS distils; the 200-of-1000
boundary is kept as a fraction of the scheduler's table, and with the flow default t in [0.3, 0.98] only the
t >= 200 branch runs there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import DiffusionModel, LossOutput
from .prepare import distil_renders, masked, per_view
from .sds import add_noise, check_prompt, distil_weight
from .timesteps import TimestepSchedule

NEGATIVE_PROMPT = ("unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, "
                   "low-resolution, gloomy")
"""NFSD's negative prompt for the domain direction at large t (from the paper)."""


@dataclass
class NFSDLoss:
    """Masked noise-free score distillation toward `prompt`; a `GuidanceLoss` (originals, anchors ignored)."""

    model: DiffusionModel
    prompt: str
    guidance_scale: float = 7.5
    """s, the weight of the condition direction (NFSD: a nominal 7.5 instead of SDS's 100)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    negative_prompt: str = NEGATIVE_PROMPT
    small_t: float = 0.2
    """Below this fraction of T (the paper's 200 of 1000) delta_D is the unconditional prediction itself."""

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)
        if not 0.0 <= self.small_t <= 1.0:
            raise ValueError(f"small_t must be a fraction in [0, 1], got {self.small_t}")

    def gradient(self, latents: Tensor, t: Tensor, noise: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """w(t) (delta_D + s delta_C) at z_t = noised `latents` [B, C, h, w], times the mask; no graph."""
        model = self.model
        abar = model.alphas_cumprod
        with torch.no_grad():
            latents_t = add_noise(latents.detach().float(), noise, abar[t])
            eps_u = model.predict_noise(latents_t, t, model.condition(""), guidance_scale=1.0)
            eps_c = model.predict_noise(latents_t, t, model.condition(self.prompt), guidance_scale=1.0)
            small = t < round(self.small_t * model.num_train_timesteps)
            delta_d = eps_u
            if not bool(small.all()):
                eps_neg = model.predict_noise(latents_t, t, model.condition(self.negative_prompt), guidance_scale=1.0)
                delta_d = torch.where(per_view(small, eps_u).bool(), eps_u, eps_u - eps_neg)
            grad = per_view(distil_weight(model, t), eps_u) * (delta_d + self.guidance_scale * (eps_c - eps_u))
        return masked(grad, mask)

    def __call__(self, images: Tensor, *, step: int, total_steps: int, mask2d: Tensor | None = None,
                 originals: Tensor | None = None, anchors: Tensor | None = None,
                 generator: torch.Generator | None = None) -> LossOutput:
        """images [B, H, W, 3]: draws t (one per view), then the noise, from `generator` (as SDS)."""
        return distil_renders(self, images, mask2d, step=step, total_steps=total_steps, generator=generator,
                              name="nfsd")
