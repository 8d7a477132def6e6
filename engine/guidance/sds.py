"""Score distillation sampling (SDS), optionally restricted to a projected 2D mask.

For a render x with latents z = E(x), noise eps and timestep t, SDS pushes z along
    grad = w(t) * (eps_hat(z_t, t, prompt) - eps),   w(t) = 1 - abar_t,   z_t = sqrt(abar_t) z + sqrt(1-abar_t) eps
without backpropagating through the denoiser. The surrogate loss 0.5 * ||z - (z - grad).detach()||^2 / B has
exactly grad / B as its gradient w.r.t. z (per-view gradients averaged over the B views), so autograd carries
it through the encoder, the resize to the model's native size (native_size.py) and the renderer to the
Gaussians. A 2D mask multiplies grad in latent space (the mask
area-averaged down to the latent resolution), so nothing outside the mask is pushed.

A rectified-flow model (flow_model.py) supplies its own residual through `score_residual`: RFDS's
w(s) (v_hat(x_s) - (eps - z)) with x_s = (1 - s) z + s eps; v_hat - (eps - z) = (eps_hat - eps) / (1 - s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Condition, DiffusionModel, LossOutput, randn
from .native_size import to_model_size
from .timesteps import TimestepSchedule


def latent_mask(mask2d: Tensor, size: tuple[int, int]) -> Tensor:
    """[B, H, W, 1] pixel mask -> [B, 1, h, w] fraction of each latent pixel's footprint inside the mask."""
    if mask2d.dim() != 4 or mask2d.shape[-1] != 1:
        raise ValueError(f"mask2d must be [B, H, W, 1], got {tuple(mask2d.shape)}")
    return F.adaptive_avg_pool2d(mask2d.permute(0, 3, 1, 2).float(), size)


def sds_weight(alphas_cumprod: Tensor, t: Tensor) -> Tensor:
    """w(t) = 1 - abar_t (DreamFusion's weighting), [B]."""
    return 1.0 - alphas_cumprod[t]


def distil_weight(model: DiffusionModel, t: Tensor) -> Tensor:
    """The weight that turns an epsilon difference into the model family's distillation units, [B]: SDS's
    w(t) = 1 - abar_t, or a model's own `distil_weight` (the rectified-flow model's w(s) / (1 - s): an epsilon
    difference at one x_s is (1 - s) times the velocity difference, so this is RFDS's velocity residual). The
    variants that weight an epsilon difference as SDS does (nfsd, csd, esd) use it, so on each family they share
    SDS's scale: ESD at lambda = 1 is SDS on both families (tests/guidance/test_flow_variants.py)."""
    own = getattr(model, "distil_weight", None)
    return own(t) if own is not None else sds_weight(model.alphas_cumprod, t)


def add_noise(latents: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """z_t = sqrt(abar) z + sqrt(1 - abar) eps, alpha_bar [B]."""
    a = alpha_bar.reshape(-1, *([1] * (latents.dim() - 1)))
    return a.sqrt() * latents + (1.0 - a).sqrt() * noise


def score_residual(
    model: DiffusionModel,
    latents: Tensor,  # [B, C, h, w] clean latents
    noise: Tensor,  # [B, C, h, w]
    t: Tensor,  # [B] long
    cond: Condition,
    *,
    guidance_scale: float,
    uncond: Condition | None = None,
) -> Tensor:
    """The model family's weighted distillation residual at `latents` (the unmasked SDS gradient), float32, no
    graph: w(t) (eps_hat(z_t) - eps) in epsilon form, or the model's own `score_residual` when it has one (the
    rectified-flow model: RFDS's velocity residual, flow_model.py), so each family plugs in its formula."""
    own = getattr(model, "score_residual", None)
    if own is not None:
        return own(latents, noise, t, cond, guidance_scale=guidance_scale, uncond=uncond)
    with torch.no_grad():
        latents_t = add_noise(latents.detach().float(), noise, model.alphas_cumprod[t])
        eps_hat = model.predict_noise(latents_t, t, cond, guidance_scale=guidance_scale, uncond=uncond)
        return sds_weight(model.alphas_cumprod, t).reshape(-1, 1, 1, 1) * (eps_hat - noise)


def sds_surrogate(latents: Tensor, grad: Tensor) -> Tensor:
    """Scalar whose gradient w.r.t. `latents` [B, ...] is exactly `grad / B`."""
    target = (latents - grad).detach()
    return 0.5 * (latents - target).pow(2).sum() / latents.shape[0]


def latent_mask_like(mask2d: Tensor | None, latents: Tensor) -> Tensor | None:
    """`latent_mask` at the resolution and on the device of `latents` [B, C, h, w]; None stays None."""
    return None if mask2d is None else latent_mask(mask2d, latents.shape[-2:]).to(latents.device)


def draw_timesteps(
    schedule: TimestepSchedule, model: DiffusionModel, latents: Tensor, *,
    step: int, total_steps: int, generator: torch.Generator | None,
) -> Tensor:
    """One timestep per view of `latents` [B, ...] from `schedule`, [B] long on the latents' device."""
    return schedule.sample(
        latents.shape[0], step=step, total_steps=total_steps,
        num_train_timesteps=model.num_train_timesteps, generator=generator, device=latents.device,
    )


def surrogate_output(latents: Tensor, grad: Tensor, t: Tensor, model: DiffusionModel, name: str) -> LossOutput:
    """`sds_surrogate(latents, grad)` with the usual info: loss, `name` (= loss), t as a fraction, grad_norm."""
    loss = sds_surrogate(latents, grad)
    info = float_info(loss=loss, **{name: loss}, t=t.float().mean() / model.num_train_timesteps, grad_norm=grad.norm())
    return LossOutput(loss, info)


def float_info(**values: Tensor) -> dict[str, float]:
    """Detached scalars as floats with one device sync (not one per value)."""
    numbers = torch.stack([v.detach().float().reshape(()) for v in values.values()]).tolist()
    return dict(zip(values, numbers))


def check_images(images: Tensor, model: DiffusionModel, what: str = "images") -> None:
    """Renders must be [B, H, W, 3] with H, W multiples of the model's latent scale."""
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"{what} must be [B, H, W, 3], got {tuple(images.shape)}")
    f = model.latent_scale
    if images.shape[1] % f or images.shape[2] % f:
        raise ValueError(f"{what} size {images.shape[1]}x{images.shape[2]} must be a multiple of {f} for {model.name}")


def check_prompt(prompt: str, what: str = "prompt") -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{what} is empty: describe what the masked part should become")
    return prompt.strip()


@dataclass
class SDSLoss:
    """Masked SDS toward `prompt`. Call it like every `GuidanceLoss`; `originals` and `anchors` are ignored."""

    model: DiffusionModel
    prompt: str
    guidance_scale: float = 100.0
    """Classifier-free guidance scale (SDS needs a large one; DreamFusion used 100)."""
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)

    def gradient(
        self,
        latents: Tensor,  # [B, C, h, w]
        t: Tensor,  # [B] long
        noise: Tensor,  # [B, C, h, w]
        *,
        mask: Tensor | None = None,  # [B, 1, h, w] latent-resolution mask
        cond: Condition | None = None,
    ) -> Tensor:
        """The SDS gradient w(t) (eps_hat - eps) * mask (a flow model's: its velocity residual, see
        `score_residual`), [B, C, h, w] float32 (no graph)."""
        model = self.model
        cond = cond if cond is not None else model.condition(self.prompt)
        grad = score_residual(model, latents, noise, t, cond, guidance_scale=self.guidance_scale)
        return grad if mask is None else grad * mask

    def __call__(
        self,
        images: Tensor,  # [B, H, W, 3] in [0, 1]
        *,
        step: int,
        total_steps: int,
        mask2d: Tensor | None = None,  # [B, H, W, 1]
        originals: Tensor | None = None,
        anchors: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """Draws t (one per view), then the noise, from `generator` in that order. Renders of any size are
        resized to the model's native size first (native_size.py), the mask with them."""
        images, mask2d = to_model_size(self.model, images, mask2d)
        check_images(images, self.model)
        latents = self.model.encode_images(images)
        t = draw_timesteps(self.timesteps, self.model, latents, step=step, total_steps=total_steps, generator=generator)
        noise = randn(tuple(latents.shape), generator=generator, device=latents.device)
        grad = self.gradient(latents, t, noise, mask=latent_mask_like(mask2d, latents))
        return surrogate_output(latents, grad, t, self.model, "sds")
