"""Entropic Score Distillation (ESD; Wang et al., "Taming Mode Collapse in Score Distillation for Text-to-3D
Generation", arXiv 2401.00909, Dec 2023), with its learned score replaced by a closed-form one (stated below).

Why. SDS maximizes each view's likelihood separately, so every view collapses onto the prompt's single most
likely image: the Janus face. ESD adds the entropy of the *rendered* image distribution to the objective,
which rewards views for differing. Its gradient (the paper's "classifier-free guidance trick") is

    grad = w(t) * (eps_pre(z_t, t, y)  -  lambda eps_phi(z_t, t, c, y)  -  (1 - lambda) eps_phi(z_t, t, y))

where eps_phi is a LoRA of the diffusion model fitted to the renders (as in VSD / ProlificDreamer): with the
camera c it scores the render of that view, without it the renders of all views mixed. lambda = 1 is VSD.

What we implement instead of training the LoRA (no honest LoRA fit fits a CPU test or a 15-minute GPU check):

- eps_phi(z_t, c): the render of camera c is one deterministic image, so the exact score of "renders of this
  view" is that of a point mass at z: its epsilon is the true noise eps. That is the limit a perfectly fitted
  camera-conditioned LoRA tends to, and with it lambda = 1 is *exactly* SDS (the tests check it).
- eps_phi(z_t): the renders of all views, modelled as a diagonal Gaussian N(mu, sigma^2) whose mean and variance
  per latent pixel are running averages over the views seen so far (momentum `momentum`, reset when the latent
  size changes); its epsilon is closed-form: sqrt(1-abar) (z_t - sqrt(abar) mu) / (abar sigma^2 + 1 - abar).

So here grad = w(t) (eps_hat - lambda eps - (1 - lambda) eps_gauss), w(t) = 1 - abar_t: SDS plus an entropy
term whose expectation, -(1 - lambda) w(t) sqrt(abar (1 - abar)) (z - mu) / (abar sigma^2 + 1 - abar), pushes
each view away from the mean of the views (gradient descent subtracts it). It is a crude stand-in for the
paper's learned score: it knows only per-pixel mean and spread across views, nothing of image content.
Defaults: lambda = 0.5 (the paper sweeps lambda; the value is ours); guidance 100, as SDS, since without the LoRA
the prior term is SDS's.

Model families: on a rectified-flow model (SD3 class) the formula runs on its exact epsilon view with SDS's
weight for that family, w = 1 / (1 - s) (`sds.distil_weight`), so lambda = 1 is RFDS there, as it is SDS on the
diffusion family (both checked by tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import DiffusionModel, LossOutput, randn
from .prepare import encode_views, masked, per_view
from .sds import add_noise, check_prompt, draw_timesteps, distil_weight, surrogate_output
from .timesteps import TimestepSchedule


def gaussian_epsilon(latents_t: Tensor, alpha_bar: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Exact epsilon of data N(mean, var) (per element) at z_t [B, ...]: sqrt(1-a)(z_t - sqrt(a) mean)/(a var + 1-a)."""
    a = per_view(alpha_bar, latents_t)
    return (1.0 - a).sqrt() * (latents_t - a.sqrt() * mean) / (a * var + 1.0 - a)


@dataclass
class ESDLoss:
    """Masked entropic score distillation toward `prompt` (see the module docstring); a `GuidanceLoss`.

    Keeps running view statistics: make one per job (the loops do)."""

    model: DiffusionModel
    prompt: str
    guidance_scale: float = 100.0
    """Classifier-free guidance scale of the pretrained term (SDS's: the LoRA is replaced, see above)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    view_weight: float = 0.5
    """lambda: weight of the per-view score; 1 - lambda weights the all-views (entropy) score. 1 is SDS."""
    momentum: float = 0.9
    """How much of the running mean / variance of the views' latents is kept at each step."""
    _mean: Tensor | None = field(default=None, init=False, repr=False)
    _sq: Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)
        if not 0.0 <= self.view_weight <= 1.0 or not 0.0 <= self.momentum < 1.0:
            raise ValueError("ESD needs view_weight in [0, 1] and momentum in [0, 1)")

    def observe(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """Fold these views' latents [B, C, h, w] into the running statistics; returns (mean, var) [1, C, h, w]."""
        z = latents.detach().float()
        mean, sq = z.mean(0, keepdim=True), (z * z).mean(0, keepdim=True)
        if self._mean is not None and self._mean.shape == mean.shape:
            mean = self.momentum * self._mean + (1 - self.momentum) * mean
            sq = self.momentum * self._sq + (1 - self.momentum) * sq
        self._mean, self._sq = mean, sq
        return mean, (sq - mean * mean).clamp_min(0.0)

    def gradient(self, latents: Tensor, t: Tensor, noise: Tensor, mean: Tensor, var: Tensor, *,
                 mask: Tensor | None = None) -> Tensor:
        """w(t) (eps_hat - lambda eps - (1 - lambda) eps_gauss), times the mask; no graph."""
        model = self.model
        abar = model.alphas_cumprod
        with torch.no_grad():
            latents_t = add_noise(latents.detach().float(), noise, abar[t])
            eps_hat = model.predict_noise(latents_t, t, model.condition(self.prompt), guidance_scale=self.guidance_scale)
            eps_views = gaussian_epsilon(latents_t, abar[t], mean, var)
            lam = self.view_weight
            grad = per_view(distil_weight(model, t), noise) * (eps_hat - lam * noise - (1.0 - lam) * eps_views)
        return masked(grad, mask)

    def __call__(self, images: Tensor, *, step: int, total_steps: int, mask2d: Tensor | None = None,
                 originals: Tensor | None = None, anchors: Tensor | None = None,
                 generator: torch.Generator | None = None) -> LossOutput:
        """images [B, H, W, 3]: draws t (one per view), then the noise, from `generator` (as SDS)."""
        views = encode_views(self.model, images, mask2d)
        mean, var = self.observe(views.latents)
        t = draw_timesteps(self.timesteps, self.model, views.latents, step=step, total_steps=total_steps,
                           generator=generator)
        noise = randn(tuple(views.latents.shape), generator=generator, device=views.latents.device)
        grad = self.gradient(views.latents, t, noise, mean, var, mask=views.mask)
        return surrogate_output(views.latents, grad, t, self.model, "esd")
