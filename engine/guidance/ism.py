"""Interval Score Matching (ISM, LucidDreamer — Liang et al., CVPR 2024): variance-reduced score distillation.

Used by text-to-3D and, like every loss here, by masked edits (`--method ism`; the mask multiplies its gradient).

Why a variant at all. SDS pushes the render's latents z along w(t) (eps_hat(z_t, t, y) - eps), where eps is the
random noise that made z_t. eps_hat tries to *predict* that noise, so most of the difference is the network's
failure to recover a random draw: a large, fresh, zero-mean term each step. Text-to-3D fights it with a huge
guidance scale (100), which gives the over-saturated, over-smoothed look of SDS objects.

Why ISM (and not NFSD). ISM removes the random noise from the update altogether: instead of noising z with a
fresh eps, it walks the deterministic DDIM path from z up to a timestep s (DDIM *inversion*, with the
unconditional model), takes one more inversion step to t = s + delta, and compares the model's predictions at
the two ends of that short interval:

    z_s  = DDIM-invert(z, 0 -> s)                               (steps of at most `inversion_step`)
    z_t  = DDIM-step(z_s, s -> t) with eps_s = eps(z_s, s, "")   (t = s + `interval`)
    grad = w(t) * (eps_cfg(z_t, t, y) - eps_s),      w(t) = sqrt((1 - abar_t) / abar_t)

Both predictions are evaluated on points of the same deterministic trajectory, so nothing random is left in
the difference except the choice of t; a moderate guidance scale (7.5) suffices. NFSD (Katzir et al.) instead
drops the noise term by splitting the CFG prediction into a "condition" and a "domain" direction, which relies
on a negative prompt and on the conditional and unconditional predictions differing; for the closed-form prior
(one distribution per prompt) those coincide and NFSD would give no gradient at all. ISM needs nothing of the
model beyond the `DiffusionModel` protocol, and under the closed-form prior its gradient is a positive multiple
of (z - mu): along the exact DDIM path of Gaussian data the standardized deviation (z - mu) / s is constant and
the predicted noise grows monotonically with t, so eps(z_t, t) - eps(z_s, s) points from mu to z and has no
noise (up to a small offset from treating z as the point at timestep 0, and DDIM's discretization; the tests
bound both at 5%). That makes ISM testable offline, like SDS.

Cost: ceil(s / inversion_step) + 1 unconditional passes plus one guided pass per step (LucidDreamer's defaults,
interval 50 and inversion step 200 of 1000 timesteps, give at most 6 network calls). The clean latents are
treated as the trajectory's point at timestep 0 (abar_0 ~ 0.999 for Stable Diffusion), as in LucidDreamer.

Model families: on a rectified-flow model (SD3 class) DDIM inversion on the model's exact epsilon view is the
Euler inversion of the flow ODE (flow_model.py; a test checks the step), so the formula applies as written;
w(t) = sqrt((1 - abar_t) / abar_t) is s / (1 - s) there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import Condition, DiffusionModel, LossOutput
from .native_size import to_model_size
from .sds import check_images, check_prompt, draw_timesteps, latent_mask_like, surrogate_output
from .timesteps import TimestepSchedule


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def ddim_step(latents: Tensor, eps: Tensor, abar_from: Tensor, abar_to: Tensor) -> Tensor:
    """Move `latents` [B, ...] along the deterministic DDIM path from abar_from [B] to abar_to [B] with the
    noise estimate `eps`: x0_hat = (x - sqrt(1 - a) eps) / sqrt(a), x' = sqrt(a') x0_hat + sqrt(1 - a') eps.
    Identity when abar_from == abar_to."""
    a, a_next = _per_sample(abar_from, latents), _per_sample(abar_to, latents)
    x0_hat = (latents - (1.0 - a).sqrt() * eps) / a.sqrt()
    return a_next.sqrt() * x0_hat + (1.0 - a_next).sqrt() * eps


@dataclass
class ISMLoss:
    """Interval score matching toward `prompt` (see the module docstring); a `GuidanceLoss`.

    `mask2d` restricts the gradient like SDS's; `originals` and `anchors` are ignored.
    """

    model: DiffusionModel
    prompt: str
    guidance_scale: float = 7.5
    """Classifier-free guidance scale of the prediction at t (LucidDreamer used 7.5)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    """Where t is drawn (then s = t - interval)."""
    interval: float = 0.05
    """t - s, as a fraction of the training timesteps (LucidDreamer's delta_t = 50 of 1000)."""
    inversion_step: float = 0.2
    """Largest DDIM inversion step from 0 to s, as a fraction (LucidDreamer's xs_delta_t = 200 of 1000)."""

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)
        if not 0.0 < self.interval < 1.0:
            raise ValueError(f"ISM interval must be a fraction in (0, 1), got {self.interval}")
        if not 0.0 < self.inversion_step <= 1.0:
            raise ValueError(f"ISM inversion step must be a fraction in (0, 1], got {self.inversion_step}")

    def _uncond_eps(self, latents: Tensor, t: Tensor, uncond: Condition) -> Tensor:
        return self.model.predict_noise(latents, t, uncond, guidance_scale=1.0)

    def gradient(self, latents: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:  # latents [B, C, h, w], t [B]
        """(ISM gradient [B, C, h, w] without the mask, s [B]); no graph."""
        model = self.model
        T = model.num_train_timesteps
        abar = model.alphas_cumprod
        interval = max(1, round(self.interval * T))
        stride = max(1, round(self.inversion_step * T))
        cond, uncond = model.condition(self.prompt), model.condition("")
        with torch.no_grad():
            t = t.clamp(min=1)
            s = (t - interval).clamp(min=0)
            x = latents.detach().float()
            # DDIM inversion 0 -> s with the unconditional model; samples that arrived stay put.
            current = torch.zeros_like(s)
            while bool((current < s).any()):
                nxt = torch.minimum(current + stride, s)
                eps = self._uncond_eps(x, current, uncond)
                x = ddim_step(x, eps, abar[current], abar[nxt])
                current = nxt
            eps_s = self._uncond_eps(x, s, uncond)
            x_t = ddim_step(x, eps_s, abar[s], abar[t])
            eps_t = model.predict_noise(x_t, t, cond, guidance_scale=self.guidance_scale, uncond=uncond)
            a_t = abar[t]
            w = ((1.0 - a_t) / a_t).sqrt().reshape(-1, 1, 1, 1)
            return w * (eps_t - eps_s), s

    def __call__(
        self,
        images: Tensor,  # [B, H, W, 3] in [0, 1], requires grad
        *,
        step: int,
        total_steps: int,
        mask2d: Tensor | None = None,  # [B, H, W, 1]
        originals: Tensor | None = None,
        anchors: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Draws t (one per view) from `generator`; nothing else is random."""
        images, mask2d = to_model_size(self.model, images, mask2d)
        check_images(images, self.model)
        latents = self.model.encode_images(images)
        t = draw_timesteps(self.timesteps, self.model, latents, step=step, total_steps=total_steps, generator=generator)
        grad, _ = self.gradient(latents, t)
        mask = latent_mask_like(mask2d, latents)
        if mask is not None:
            grad = grad * mask
        return surrogate_output(latents, grad, t, self.model, "ism")
