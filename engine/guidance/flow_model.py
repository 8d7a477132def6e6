"""SD3-class rectified-flow models behind the `DiffusionModel` protocol, and their distillation residual.

Rectified flow (SD3, SD3.5) noises a clean latent x0 along a straight line, x_s = (1 - s) x0 + s eps for a noise
level s ("sigma") in [0, 1], and the transformer predicts the velocity v = eps - x0. From a velocity,
    x0_hat = x_s - s v_hat,   eps_hat = x_s + (1 - s) v_hat.

Timesteps. Like the SD family, a timestep is an integer index i in [0, T) (T = the scheduler's
num_train_timesteps, 1000): i / T is the uniform time u, and the noise level is SD3's shifted one,
s = shift u / (1 + (shift - 1) u) (the scheduler's `shift`, 3.0 for SD3/SD3.5), the same table the
FlowMatchEulerDiscreteScheduler samples from. The transformer is fed s * T. So a `TimestepSchedule` fraction
(RoMaP's t in [0.3, 0.98]) means the same position in the scheduler's table for both families.

One protocol for both families. x_s / c with c = sqrt((1-s)^2 + s^2) is a variance-preserving latent
sqrt(abar) x0 + sqrt(1 - abar) eps with abar = (1-s)^2 / c^2 (exact, no approximation), and epsilon is the same
quantity in both views. So the model exposes that `alphas_cumprod` and a `predict_noise` that takes the VP
latent, rescales it to x_s, runs the transformer and returns eps_hat. Every epsilon-form method (SDS's
w(t)(eps_hat - eps), DDS, SLaMP's DDIM steps, ISM's inversion, ...) therefore runs on a flow model unchanged;
a DDIM step in these terms is exactly the flow's Euler step x_s' = x_s + (s' - s) v_hat (tests check it).
Classifier-free guidance on velocity equals CFG on epsilon (eps is affine in v for a fixed x_s).

Distillation (`score_residual`, used by SDS, DDS and RoMaP through `sds.score_residual`): RFDS-style,
    grad = w(s) (v_hat(x_s, s, prompt) - (eps - x0)),   w(s) = 1   (`flow_weight`).
It is the epsilon-form SDS divided by (1 - s) (eps_hat - eps = (1 - s)(v_hat - v)): the velocity residual is
x0 - x0_hat + eps_hat - eps, O(1) at every noise level, so a uniform weight already balances the timesteps
(epsilon-SDS needs 1 - abar to damp its large-t noise; here the small-s residual is the clean-image error and
needs no damping either). That makes SDS's learning rates carry over at the same guidance scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Condition, classifier_free_guidance
from .flow_text import FlowTextEncoders


def flow_sigmas(num_train_timesteps: int, shift: float) -> Tensor:
    """[T] float32 noise level of each timestep index: s = shift u / (1 + (shift - 1) u), u = i / T."""
    u = torch.arange(num_train_timesteps, dtype=torch.float64) / num_train_timesteps
    return (shift * u / (1.0 + (shift - 1.0) * u)).float()


def equivalent_alphas_cumprod(sigmas: Tensor) -> Tensor:
    """[T] abar of the variance-preserving latent x_s / sqrt((1-s)^2 + s^2): (1-s)^2 / ((1-s)^2 + s^2)."""
    s = sigmas.double()
    return ((1 - s) ** 2 / ((1 - s) ** 2 + s**2)).float()


def flow_weight(sigmas: Tensor) -> Tensor:
    """w(s) of the flow distillation residual, [B]: uniform (see the module docstring for why)."""
    return torch.ones_like(sigmas)


def flow_noised(latents: Tensor, noise: Tensor, sigmas: Tensor) -> Tensor:
    """x_s = (1 - s) x0 + s eps, sigmas [B]."""
    s = sigmas.reshape(-1, *([1] * (latents.dim() - 1)))
    return (1.0 - s) * latents + s * noise


class FlowModel:
    """An SD3-class pipeline (see the module docstring). Built by `flow_loading.load_flow_model`."""

    family = "flow"
    prediction_type = "flow"  # the network predicts velocity; predict_noise converts it to epsilon

    def __init__(self, *, text: FlowTextEncoders, transformer, vae, sigmas: Tensor, device: torch.device,
                 dtype: torch.dtype, name: str) -> None:
        self.text, self.transformer, self.vae = text, transformer, vae
        for module in (transformer, vae):
            module.requires_grad_(False).eval()
        self.device, self.dtype, self.name = device, dtype, name
        self.sigmas = sigmas.to(device, torch.float32)
        self.alphas_cumprod = equivalent_alphas_cumprod(sigmas).to(device)
        self.num_train_timesteps = int(self.sigmas.shape[0])
        self.latent_channels = int(vae.config.latent_channels)
        self.latent_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.patch_size = int(transformer.config.patch_size)
        sample = transformer.config.sample_size
        sample = sample if isinstance(sample, int) else max(sample)
        self.image_size = int(sample) * self.latent_scale  # native size (1024 for SD3-medium): native_size.py
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)

    @property
    def tokenizer(self):
        """The CLIP-L tokenizer: a word's positions in it are its positions in the joint text sequence."""
        return self.text.tokenizers[0]

    # --- text ----------------------------------------------------------------------------------------
    def condition(self, prompt: str, *, original: Tensor | None = None) -> Condition:
        """The prompt's token sequence and pooled embedding; `original` is ignored."""
        sequence, pooled = self.text.encode([prompt])
        return Condition(prompt, embeddings=sequence, pooled=pooled)

    def text_embeddings(self, prompts: list[str]) -> Tensor:
        """[len(prompts), L, D] joint-attention text sequences (the pooled part: `condition`)."""
        return self.text.encode(prompts)[0]

    # --- images <-> latents --------------------------------------------------------------------------
    def encode_images(self, images: Tensor) -> Tensor:
        """[B, H, W, 3] in [0, 1] -> [B, C, H/f, W/f] float32: the VAE posterior mean, shifted and scaled."""
        x = images.permute(0, 3, 1, 2).to(self.device, self.dtype) * 2.0 - 1.0
        mean = self.vae.encode(x).latent_dist.mean
        return (mean.float() - self.shift_factor) * self.scaling_factor

    def decode_latents(self, latents: Tensor) -> Tensor:
        """[B, C, h, w] -> [B, f h, f w, 3] in [0, 1], float32."""
        z = latents / self.scaling_factor + self.shift_factor
        x = self.vae.decode(z.to(self.dtype)).sample.float()
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1)

    # --- velocity ------------------------------------------------------------------------------------
    def velocity(self, x: Tensor, t: Tensor, embeddings: Tensor, pooled: Tensor) -> Tensor:
        """One transformer pass, [B, C, h, w] float32. Latents whose size is not a multiple of the patch size
        (a non-square render resized to the native size) are padded by replication and the output cropped. The
        timestep s * T stays float32 (bf16 would round 999.7 to 1000; the embedding casts after the sinusoids)."""
        h, w = x.shape[-2:]
        p = self.patch_size
        padded = F.pad(x, (0, -w % p, 0, -h % p), mode="replicate") if (h % p or w % p) else x
        out = self.transformer(
            hidden_states=padded.to(self.dtype), timestep=self.sigmas[t] * self.num_train_timesteps,
            encoder_hidden_states=embeddings.to(self.dtype), pooled_projections=pooled.to(self.dtype),
            return_dict=False,
        )[0]
        return out[..., :h, :w].float()

    def predict_velocity(self, x: Tensor, t: Tensor, cond: Condition, *, guidance_scale: float,
                         uncond: Condition | None = None) -> Tensor:
        """v_hat(x_s, s) with classifier-free guidance, [B, C, h, w] float32; one pass over [uncond; cond]
        (cond only when the scale is 1). `x` is the flow latent x_s, `t` [B] long timestep indices."""
        if cond.embeddings is None or cond.pooled is None:
            raise ValueError(f"condition for {cond.prompt!r} has no SD3 text embeddings (sequence and pooled)")
        batch = x.shape[0]
        if guidance_scale == 1.0:
            return self.velocity(x, t, cond.embeddings.expand(batch, -1, -1), cond.pooled.expand(batch, -1))
        uncond = uncond if uncond is not None else self.condition("")
        emb = torch.cat([uncond.embeddings.expand(batch, -1, -1), cond.embeddings.expand(batch, -1, -1)])
        pooled = torch.cat([uncond.pooled.expand(batch, -1), cond.pooled.expand(batch, -1)])
        v_uncond, v_cond = self.velocity(torch.cat([x, x]), torch.cat([t, t]), emb, pooled).chunk(2)
        return classifier_free_guidance(v_uncond, v_cond, guidance_scale)

    def predict_noise(self, latents_t: Tensor, t: Tensor, cond: Condition, *, guidance_scale: float,
                      uncond: Condition | None = None) -> Tensor:
        """Epsilon for a variance-preserving latent (the protocol's form): x_s = latents_t * c, c = 1/(sqrt(abar)
        + sqrt(1 - abar)); eps_hat = x_s + (1 - s) v_hat."""
        abar = self.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        x = latents_t.float() / (abar.sqrt() + (1.0 - abar).sqrt())
        v = self.predict_velocity(x, t, cond, guidance_scale=guidance_scale, uncond=uncond)
        return x + (1.0 - self.sigmas[t].reshape(-1, 1, 1, 1)) * v

    # --- distillation --------------------------------------------------------------------------------
    def distil_weight(self, t: Tensor) -> Tensor:
        """[B] w(s) / (1 - s): an epsilon difference at one x_s times this is the velocity difference RFDS
        weights by w(s) (sds.distil_weight). Finite: the table's largest s is below 1."""
        sigmas = self.sigmas[t]
        return flow_weight(sigmas) / (1.0 - sigmas)

    def score_residual(self, latents: Tensor, noise: Tensor, t: Tensor, cond: Condition, *,
                       guidance_scale: float, uncond: Condition | None = None) -> Tensor:
        """RFDS's w(s) (v_hat(x_s) - (eps - x0)) at clean latents x0 [B, C, h, w], float32, no graph."""
        with torch.no_grad():
            x0 = latents.detach().float()
            sigmas = self.sigmas[t]
            v = self.predict_velocity(flow_noised(x0, noise, sigmas), t, cond, guidance_scale=guidance_scale,
                                      uncond=uncond)
            return flow_weight(sigmas).reshape(-1, 1, 1, 1) * (v - (noise - x0))
