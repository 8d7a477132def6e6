"""The closed-form prior: the exact denoiser of Gaussian data, a diffusion "model" with no weights.

If the data of a prompt are x0 ~ N(mu, s^2 I) and x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, then

    E[x0 | x_t] = mu + s^2 sqrt(abar) / (abar s^2 + 1 - abar) * (x_t - sqrt(abar) mu)
    eps_hat     = (x_t - sqrt(abar) E[x0 | x_t]) / sqrt(1 - abar)

SDS with this denoiser has expected gradient proportional to (x0 - mu), so distillation provably moves an image
toward mu; with s -> 0 the gradient is noise-free. It works in pixel space: the "latent" of an image is the image
itself, channels first, mapped to [-1, 1] (the range diffusion models are trained on, so the usual noise schedule
means the usual thing). A prompt's mean is the target (a constant colour, or one image per view); a prompt given
`original=` (the DDS source prompt, which describes the original renders) is centred on those originals.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Condition


def sd_alphas_cumprod(num_train_timesteps: int = 1000) -> Tensor:
    """abar_t of Stable Diffusion's "scaled_linear" schedule (beta from 0.00085 to 0.012), [T] float32."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def _per_sample(alpha_bar: Tensor, like: Tensor) -> Tensor:
    return alpha_bar.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def closed_form_x0(x_t: Tensor, alpha_bar: Tensor, mean: Tensor, data_std: float) -> Tensor:
    """E[x0 | x_t] for x0 ~ N(mean, data_std^2 I); x_t [B, ...], alpha_bar [B], mean broadcastable to x_t."""
    a = _per_sample(alpha_bar, x_t)
    s2 = data_std**2
    gain = s2 * a.sqrt() / (a * s2 + 1.0 - a)
    return mean + gain * (x_t - a.sqrt() * mean)


def closed_form_epsilon(x_t: Tensor, alpha_bar: Tensor, mean: Tensor, data_std: float) -> Tensor:
    """eps_hat = (x_t - sqrt(abar) E[x0|x_t]) / sqrt(1 - abar), in the equivalent form that stays finite as
    abar -> 1: sqrt(1 - abar) (x_t - sqrt(abar) mean) / (abar s^2 + 1 - abar)."""
    a = _per_sample(alpha_bar, x_t)
    sigma2 = 1.0 - a
    return sigma2.sqrt() * (x_t - a.sqrt() * mean) / (a * data_std**2 + sigma2)


class ClosedFormPrior:
    """A `DiffusionModel` whose every prompt is a Gaussian around a target image (see the module docstring).

    `target` is an RGB colour in [0, 1] ([3] or a 3-tuple: the constant image of that colour) or one target
    image per view ([B, H, W, 3] in [0, 1], for callers that know the image each view should become; its batch
    must then match the images the losses see). `with_target` swaps it without touching anything else.
    """

    latent_scale = 1
    latent_channels = 3
    prediction_type = "epsilon"

    def __init__(
        self,
        target: Tensor | tuple[float, float, float],
        *,
        data_std: float = 0.05,
        alphas_cumprod: Tensor | None = None,
        device: torch.device | str = "cpu",
        name: str | None = None,
    ) -> None:
        if data_std < 0:
            raise ValueError(f"data_std must be >= 0, got {data_std}")
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.data_std = float(data_std)
        abar = sd_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod
        self.alphas_cumprod = abar.to(self.device, torch.float32)
        self.num_train_timesteps = int(self.alphas_cumprod.shape[0])
        self.target = self._check_target(target)
        self.name = name or self._default_name()

    def _check_target(self, target: Tensor | tuple[float, float, float]) -> Tensor:
        target = torch.as_tensor(target, dtype=torch.float32, device=self.device)
        if not (target.shape == (3,) or (target.dim() == 4 and target.shape[-1] == 3)):
            raise ValueError(f"closed-form target must be a colour [3] or images [B, H, W, 3], got {tuple(target.shape)}")
        if not torch.isfinite(target).all():
            raise ValueError("closed-form target contains NaN or Inf")
        return target

    def _default_name(self) -> str:
        if self.target.dim() == 1:
            r, g, b = (round(float(c) * 255) for c in self.target.clamp(0, 1))
            return f"closed-form:#{r:02x}{g:02x}{b:02x}"
        return "closed-form:per-view-images"

    def with_target(self, target: Tensor | tuple[float, float, float]) -> ClosedFormPrior:
        """The same prior (noise schedule, data_std, device) centred on a new target."""
        return ClosedFormPrior(
            target, data_std=self.data_std, alphas_cumprod=self.alphas_cumprod, device=self.device,
        )

    # --- pixel space is the latent space -------------------------------------------------------------
    def encode_images(self, images: Tensor) -> Tensor:
        """[B, H, W, 3] in [0, 1] -> [B, 3, H, W] in [-1, 1] (differentiable)."""
        return images.permute(0, 3, 1, 2).float() * 2.0 - 1.0

    def decode_latents(self, latents: Tensor) -> Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] in [0, 1]."""
        return ((latents.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1)

    # --- conditioning and denoising ------------------------------------------------------------------
    def condition(self, prompt: str, *, original: Tensor | None = None) -> Condition:
        """Centred on `original` (latents) when given, else on the target (colour or per-view images)."""
        if original is not None:
            return Condition(prompt, mean=original.detach().float())
        if self.target.dim() == 1:
            mean = self.target.reshape(1, 3, 1, 1) * 2.0 - 1.0
        else:
            mean = self.encode_images(self.target)
        return Condition(prompt, mean=mean)

    def predict_noise(
        self,
        latents_t: Tensor,  # [B, 3, H, W]
        t: Tensor,  # [B] long
        cond: Condition,
        *,
        guidance_scale: float = 1.0,
        uncond: Condition | None = None,
    ) -> Tensor:
        """Exact epsilon of the condition's Gaussian; guidance_scale and uncond have no effect (one distribution
        per condition: conditional and unconditional predictions coincide)."""
        if cond.mean is None:
            raise ValueError(f"condition for {cond.prompt!r} was not made by a closed-form prior")
        mean = cond.mean.to(latents_t.device)
        try:
            matches = torch.broadcast_shapes(mean.shape, latents_t.shape) == latents_t.shape
        except RuntimeError:
            matches = False
        if not matches:
            raise ValueError(
                f"closed-form target of shape {tuple(mean.shape)} does not match latents {tuple(latents_t.shape)}:"
                " per-view targets need one image per view at the render resolution"
            )
        alpha_bar = self.alphas_cumprod[t.to(self.device)]
        return closed_form_epsilon(latents_t.float(), alpha_bar, mean, self.data_std)
