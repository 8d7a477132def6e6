"""Renders resized to the diffusion model's native image size before they are encoded.

Stable Diffusion 1.5 was trained on 512x512 images (64x64 latents). A render of another size gives latents the
UNet has never seen: at 64-256 px (what edits and the start of text-to-3D render at) it sees 8x8-32x32 latents
and its score is meaningless. So every loss resizes its renders (and their 2D mask) to the model's native size
before the VAE, as threestudio and GaussianEditor do, and the gradient flows back through the resize to the
render. Bilinear, no antialiasing: the resize is a fixed linear map, cheap to differentiate, and exact
(the identity) when the render already has the native size.

The native size is `model.image_size` (pixels): for a diffusers model the UNet config's `sample_size` times the
VAE's downsampling factor (64 x 8 = 512 for SD 1.5). A model without one (the closed-form prior, which has no
VAE and works per pixel at any size) keeps the render's own size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def native_image_size(model) -> int | None:
    """The model's native square image size in pixels, or None when it works at any size."""
    size = getattr(model, "image_size", None)
    return None if size is None else int(size)


def model_input_size(model, height: int, width: int) -> tuple[int, int]:
    """(h, w) a render of `height x width` is resized to: native x native for a square render; otherwise the
    longer side becomes native and the shorter keeps the aspect ratio, rounded to a multiple of the latent
    scale. Unchanged for models without a native size."""
    native = native_image_size(model)
    if native is None:
        return int(height), int(width)
    if height == width:
        return native, native
    f = int(getattr(model, "latent_scale", 1))
    scale = native / max(height, width)

    def side(n: int) -> int:
        return max(f, int(round(n * scale / f)) * f)

    return side(height), side(width)


def resize_images(images: Tensor, size: tuple[int, int]) -> Tensor:
    """[B, H, W, C] -> [B, h, w, C], bilinear without antialiasing, differentiable; the input itself when the
    size already matches (so gradients and values are untouched)."""
    if images.dim() != 4:
        raise ValueError(f"images must be [B, H, W, C], got {tuple(images.shape)}")
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    x = images.permute(0, 3, 1, 2)
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
    return x.permute(0, 2, 3, 1)


def to_model_size(model, images: Tensor, mask2d: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """`images [B, H, W, 3]` (and `mask2d [B, H, W, 1]`) at the size `model_input_size` picks."""
    if images.dim() != 4:
        raise ValueError(f"images must be [B, H, W, 3], got {tuple(images.shape)}")
    size = model_input_size(model, images.shape[1], images.shape[2])
    mask = None if mask2d is None else resize_images(mask2d, size)
    return resize_images(images, size), mask
