"""DreamCatalyst's editing objective (Kim, Lee, Shin, Choi, Shim, "DreamCatalyst: Fast and High-Quality 3D Editing
via Controlling Editability and Identity Preservation", ICLR 2025; arXiv 2407.11394).

Why. DDS edits by the difference of two predictions (target prompt on the render, source prompt on the
original), weighted the same at every t, and nothing pulls the render back toward the original. DreamCatalyst
reads SDS-based editing as a reverse diffusion process (as SDEdit samples): early, at large t, the edit sets the
layout and must hold on to the scene's identity hardest; late, at small t, it refines and may change detail. So
the timestep *decreases* deterministically over the run, and two t-dependent weights trade editability
against identity:

    grad = psi(t) * (eps_hat(z_t, t, y_tgt) - eps_hat(zsrc_t, t, y_src))  +  chi(t) * (z - zsrc)
    psi(t) = delta + gamma * tau^(1/e),   chi(t) = psi0 * exp(tau),   tau = t / T

with z the render's latents, zsrc the original's, the same noise for both (as DDS), and the released code's
delta = 0.2, gamma = 0.8, psi0 = 0.075, guidance 7.5, t falling linearly from 0.9 T to 0.2 T
(dreamtime.py's "linear" schedule; the registry makes it this method's default). Their code runs on
InstructPix2Pix (image-conditioned); on a text-to-image model the source prediction is the source prompt's, as
in DDS. FreeU (which the paper adds to the UNet) is not part of the objective and is not applied.

With source == target prompt and the render still equal to the original, the gradient is exactly zero.

Model families: the formula is written in epsilon and latent terms, so on a rectified-flow model (SD3 class) it
runs unchanged on the model's exact epsilon view (flow_model.py); psi and chi are the paper's, not re-derived
for the flow's noise levels, and t keeps the released 0.9 -> 0.2 of the scheduler's (shifted) table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import DiffusionModel, LossOutput, randn
from .dreamtime import MonotoneSchedule
from .prepare import encode_views, masked, per_view
from .sds import add_noise, check_prompt, draw_timesteps, surrogate_output


def dreamcatalyst_weights(tau: Tensor, delta: float, gamma: float, psi0: float) -> tuple[Tensor, Tensor]:
    """(psi(tau), chi(tau)) for tau = t / T in [0, 1], each [B]."""
    return delta + gamma * tau.pow(1.0 / math.e), psi0 * torch.exp(tau)


@dataclass
class DreamCatalystLoss:
    """Masked DreamCatalyst edit from `source_prompt` to `prompt`. Needs `originals` (the views before the edit)."""

    model: DiffusionModel
    prompt: str
    source_prompt: str
    guidance_scale: float = 7.5
    """Classifier-free guidance scale of both predictions (the released code's 7.5)."""
    timesteps: object = field(default_factory=lambda: MonotoneSchedule(0.2, 0.9, weighting="linear"))
    """Where t is (any schedule with `sample`); default: linear from 0.9 to 0.2 of T, as released."""
    delta: float = 0.2
    gamma: float = 0.8
    psi0: float = 0.075

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)
        self.source_prompt = check_prompt(self.source_prompt, "source prompt (DreamCatalyst needs one)")

    def gradient(self, latents: Tensor, source_latents: Tensor, t: Tensor, noise: Tensor, *,
                 mask: Tensor | None = None) -> Tensor:
        """psi(t) (eps_tgt - eps_src) + chi(t) (z - zsrc) for [B, C, h, w] latents, times the mask; no graph."""
        model = self.model
        abar = model.alphas_cumprod
        with torch.no_grad():
            z, zsrc = latents.detach().float(), source_latents.detach().float()
            target = model.condition(self.prompt)
            source = target if self.source_prompt == self.prompt else model.condition(self.source_prompt, original=zsrc)
            eps_tgt = model.predict_noise(add_noise(z, noise, abar[t]), t, target, guidance_scale=self.guidance_scale)
            eps_src = model.predict_noise(add_noise(zsrc, noise, abar[t]), t, source, guidance_scale=self.guidance_scale)
            psi, chi = dreamcatalyst_weights(t.float() / model.num_train_timesteps, self.delta, self.gamma, self.psi0)
            grad = per_view(psi, z) * (eps_tgt - eps_src) + per_view(chi, z) * (z - zsrc)
        return masked(grad, mask)

    def __call__(self, images: Tensor, *, step: int, total_steps: int, mask2d: Tensor | None = None,
                 originals: Tensor | None = None, anchors: Tensor | None = None,
                 generator: torch.Generator | None = None) -> LossOutput:
        """images [B, H, W, 3]: draws t (from the schedule), then the noise, from `generator`."""
        views = encode_views(self.model, images, mask2d, originals, needs_originals="DreamCatalyst")
        t = draw_timesteps(self.timesteps, self.model, views.latents, step=step, total_steps=total_steps,
                           generator=generator)
        noise = randn(tuple(views.latents.shape), generator=generator, device=views.latents.device)
        grad = self.gradient(views.latents, views.sources, t, noise, mask=views.mask)
        return surrogate_output(views.latents, grad, t, self.model, "dreamcatalyst")
