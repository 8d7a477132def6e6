"""What every score-distillation variant does before its formula: renders -> latents at the model's native size.

Shared by the variants (nfsd, csd, esd, dreamcatalyst, lusd) so each of their modules holds its formula and
nothing else: resize the renders (and their mask, and the originals) to the model's native size
(native_size.py), check them, encode the renders with the graph kept (the gradient flows back through the VAE
and the resize to the Gaussians), encode the originals without it, and area-average the mask to the latents.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .base import DiffusionModel, LossOutput, randn
from .native_size import to_model_size
from .sds import check_images, draw_timesteps, latent_mask_like, surrogate_output


class Views(NamedTuple):
    latents: Tensor  # [B, C, h, w], requires grad through the encoder
    mask: Tensor | None  # [B, 1, h, w] fraction of each latent pixel inside the 2D mask; None: everywhere
    sources: Tensor | None  # [B, C, h, w] latents of the originals (no graph); None when not asked for


def encode_views(
    model: DiffusionModel,
    images: Tensor,  # [B, H, W, 3] in [0, 1]
    mask2d: Tensor | None = None,  # [B, H, W, 1]
    originals: Tensor | None = None,  # [B, H, W, 3]
    *,
    needs_originals: str = "",  # the method's name when it needs the originals ("" : they are not used)
) -> Views:
    """Latents of the renders (and of the originals when `needs_originals` names the method)."""
    sources = None
    if needs_originals:
        if originals is None:
            raise ValueError(f"{needs_originals} needs the original renders of the views (originals=...)")
        if originals.shape != images.shape:
            raise ValueError(f"originals {tuple(originals.shape)} must match images {tuple(images.shape)}")
        originals, _ = to_model_size(model, originals)
        with torch.no_grad():
            sources = model.encode_images(originals.detach()).float()
    images, mask2d = to_model_size(model, images, mask2d)
    check_images(images, model)
    latents = model.encode_images(images)
    return Views(latents, latent_mask_like(mask2d, latents), sources)


def distil_renders(loss, images: Tensor, mask2d: Tensor | None, *, step: int, total_steps: int,
                   generator: torch.Generator | None, name: str) -> LossOutput:
    """One step of a variant whose formula needs only the renders' latents, t and the noise (`loss.gradient(
    latents, t, noise, mask=...)`): encode the renders [B, H, W, 3], draw t (one per view) then the noise from
    `generator` in SDS's order, apply the formula, return SDS's surrogate loss under `name`."""
    views = encode_views(loss.model, images, mask2d)
    t = draw_timesteps(loss.timesteps, loss.model, views.latents, step=step, total_steps=total_steps,
                       generator=generator)
    noise = randn(tuple(views.latents.shape), generator=generator, device=views.latents.device)
    grad = loss.gradient(views.latents, t, noise, mask=views.mask)
    return surrogate_output(views.latents, grad, t, loss.model, name)


def masked(grad: Tensor, mask: Tensor | None) -> Tensor:
    """grad * mask, or grad itself without a mask."""
    return grad if mask is None else grad * mask


def per_view(values: Tensor, like: Tensor) -> Tensor:
    """[B] -> [B, 1, 1, 1] (broadcast over a view's latents)."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
