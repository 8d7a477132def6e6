"""SLaMP-style part editing of 2D views: scheduled latent mixing.

RoMaP anchors its distillation to "part-edited" 2D images: the view denoised toward the target prompt, with
only the masked part allowed to change. Their schedule is unpublished; ours (`SLaMPConfig`):

1. Encode the original view, z0 = E(original), draw one noise eps, and start from z = sqrt(abar) z0 +
   sqrt(1-abar) eps at t_start (like SDEdit: t_start is the edit strength).
2. Run `num_steps` deterministic DDIM steps with the target prompt, from t_start down to a clean latent.
3. After every step whose new timestep is >= t_stop, replace the latent OUTSIDE the mask with the original
   noised to that timestep with the same eps: z <- m z + (1 - m) (sqrt(abar) z0 + sqrt(1-abar) eps). m is the
   2D mask area-averaged to latent resolution and blurred by `mask_blur` latent pixels, so the seam is soft.
   The context therefore follows exactly the trajectory of the original, and the masked part is generated to
   fit it.
4. Below t_stop the steps run unmixed, so the model can blend the seam (the context may drift slightly; the
   anchor loss only looks inside the mask). With t_stop = 0 every step is mixed and the result equals the
   original outside the mask, up to the encoder/decoder round trip.

The views are edited at the model's native size (native_size.py: 512 px for SD 1.5) and the result is resized
back to the views' size. It has no autograd graph; it is a target, refreshed every K steps by the edit loop.

On a rectified-flow model (flow_model.py) the same code runs on the model's epsilon view: each DDIM step is then
exactly the flow's Euler step x_s' = x_s + (s' - s) v_hat, and the mixing puts back the original's flow-noised
latent (1 - s) z0 + s eps (rescaled), so RoMaP's anchors come from the SD3 sampler's own trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DiffusionModel, randn
from .native_size import to_model_size
from .sds import check_images, check_prompt, latent_mask


@dataclass(frozen=True)
class SLaMPConfig:
    """The mixing schedule. Starting points to tune, not laws."""

    num_steps: int = 20
    """DDIM steps from t_start to a clean latent."""
    t_start: float = 0.8
    """Edit strength: the fraction of the training timesteps the original is noised to before denoising."""
    t_stop: float = 0.15
    """Mixing happens at every step landing on a timestep >= t_stop * T; the rest run unmixed (seam blending)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance scale of the denoising (an ordinary sampling scale, not SDS's 100)."""
    mask_blur: float = 1.0
    """Gaussian sigma, in latent pixels, that softens the mixing mask's edge (0: no blur)."""

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 0.0 < self.t_start <= 1.0:
            raise ValueError(f"t_start must be in (0, 1], got {self.t_start}")
        if not 0.0 <= self.t_stop <= self.t_start:
            raise ValueError(f"t_stop must be in [0, t_start], got {self.t_stop}")
        if self.mask_blur < 0:
            raise ValueError(f"mask_blur must be >= 0, got {self.mask_blur}")


def blur_mask(mask: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [B, 1, h, w] (replicate padding, so a full mask stays full)."""
    if sigma <= 0:
        return mask
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=mask.dtype, device=mask.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.pad(mask, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.reshape(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.reshape(1, 1, -1, 1))


def ddim_timesteps(config: SLaMPConfig, num_train_timesteps: int) -> list[int]:
    """Decreasing integer timesteps from round(t_start * (T-1)) to 0, at most num_steps, no repeats."""
    start = round(config.t_start * (num_train_timesteps - 1))
    steps = torch.linspace(start, 0, config.num_steps).round().long().tolist()
    return list(dict.fromkeys(steps))


@torch.no_grad()
def part_edit_images(
    model: DiffusionModel,
    originals: Tensor,  # [B, H, W, 3] in [0, 1]
    mask2d: Tensor,  # [B, H, W, 1] in [0, 1]
    prompt: str,
    *,
    config: SLaMPConfig = SLaMPConfig(),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Each view edited toward `prompt` inside its mask only, [B, H, W, 3] in [0, 1] (see module docstring)."""
    if mask2d.shape[:3] != originals.shape[:3]:
        raise ValueError(f"mask2d {tuple(mask2d.shape)} must match originals {tuple(originals.shape)}")
    size = tuple(originals.shape[1:3])
    originals, mask2d = to_model_size(model, originals, mask2d)
    check_images(originals, model, "originals")
    cond = model.condition(check_prompt(prompt))
    z0 = model.encode_images(originals.float())
    mask = blur_mask(latent_mask(mask2d, z0.shape[-2:]).to(z0.device), config.mask_blur)
    noise = randn(tuple(z0.shape), generator=generator, device=z0.device)
    abar = model.alphas_cumprod
    timesteps = ddim_timesteps(config, model.num_train_timesteps)
    stop = config.t_stop * model.num_train_timesteps

    def noised_original(a: Tensor) -> Tensor:
        return a.sqrt() * z0 + (1.0 - a).sqrt() * noise

    z = noised_original(abar[timesteps[0]])
    for i, t in enumerate(timesteps):
        t_batch = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
        eps = model.predict_noise(z, t_batch, cond, guidance_scale=config.guidance_scale)
        a_t = abar[t]
        x0 = (z - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()
        t_next = timesteps[i + 1] if i + 1 < len(timesteps) else 0
        a_next = abar[t_next] if i + 1 < len(timesteps) else torch.ones((), device=z.device)
        z = a_next.sqrt() * x0 + (1.0 - a_next).sqrt() * eps
        if t_next >= stop:
            z = mask * z + (1.0 - mask) * noised_original(a_next)
    edited = model.decode_latents(z)
    if tuple(edited.shape[1:3]) == size:
        return edited
    # Back to the render size; antialiased when shrinking (the anchor is a target, no gradient goes through).
    back = F.interpolate(edited.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False, antialias=True)
    return back.clamp(0.0, 1.0).permute(0, 2, 3, 1)
