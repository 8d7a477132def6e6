"""The contract between diffusion guidance and the edit loop.

Everything a loss needs from a model is in `DiffusionModel`; everything the edit loop needs from a loss is its
call shape, `GuidanceLoss`. Two models implement the protocol:

- `DiffusersModel` (loading.py): a Stable-Diffusion-family pipeline (tokenizer, CLIP text encoder, UNet, VAE,
  scheduler config) loaded by `load_guidance` from a hub id or a local directory.
- `FlowModel` (flow_model.py): an SD3-class rectified-flow pipeline (transformer, 16-channel VAE, two CLIP and an
  optional T5 text encoder), loaded by the same `load_guidance`; the family is read from the model's config.
- `ClosedFormPrior` (closed_form.py): the exact denoiser of a Gaussian data distribution, in pixel space, with
  no weights. Tests and the offline demo use it.

Conventions shared by every module of this package:

- Images are `[B, H, W, 3]` float in [0, 1] (what `engine.render` returns); 2D masks are `[B, H, W, 1]` in [0, 1]
  (the per-Gaussian mask rendered with `render(colors=...)`).
- Latents are `[B, C, h, w]` float32, `h = H // model.latent_scale`. For Stable Diffusion `C = 4` and
  `latent_scale = 8`; for the closed-form prior the latent is the image itself, channels first, mapped to
  [-1, 1] (`C = 3`, `latent_scale = 1`).
- Renders of any size go in: each loss resizes them (and their mask) to the model's native size before the
  VAE (native_size.py). A model states that size as an optional `image_size` attribute in pixels (512 for SD
  1.5: UNet sample_size x VAE factor); one without it (the closed-form prior) works at the render's size.
- Timesteps are integer indices into `model.alphas_cumprod` (`[T]`, float32, on the model's device), with
  `x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps`.
- `predict_noise` always returns epsilon, whatever the network predicts (v- and x0-prediction are converted),
  with classifier-free guidance already applied, in float32. A rectified-flow model states its schedule in these
  terms too (flow_model.py: its sigmas as an equivalent `alphas_cumprod`), so every epsilon-form method runs on it.
- A model whose own parameterisation gives a better distillation residual than w(t) (eps_hat - eps) provides
  `score_residual` (see `sds.score_residual`; the rectified-flow model's is RFDS's velocity residual).

Model spec strings (the `--model` value of every command and of the app):

- a Hugging Face hub id, e.g. `stable-diffusion-v1-5/stable-diffusion-v1-5` (the default, `DEFAULT_MODEL`;
  overridden by the environment variable `SPLATEDIT_MODEL`, see `default_model_spec`);
- a local directory in the diffusers layout (`unet/ vae/ text_encoder/ tokenizer/ scheduler/`);
- `closed-form:<colour>`, e.g. `closed-form:#d02020` or `closed-form:red`: the closed-form prior whose target
  prompt's distribution is centred on that constant colour (an edit turns it into "the masked part recoloured":
  engine/guidance/reference.py);
- `reference:SCENE` (any readable scene file): the closed-form prior whose target for each view is the render of
  SCENE from that camera, so the ideal result of an edit or a generation is that scene (engine/guidance/reference.py).

Errors: `ModelSpecError` (a `ValueError`) for a malformed spec, `ModelUnavailableError` (an `OSError`) when
weights cannot be had; its message says what to download and where to put it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MODEL_ENV_VAR = "SPLATEDIT_MODEL"


class ModelSpecError(ValueError):
    """A `--model` value that is neither a hub id, a directory, nor `closed-form:<colour>`."""


class ModelUnavailableError(OSError):
    """The weights of a model cannot be loaded (offline, unknown id, incomplete directory).

    The message is written for the user: what failed, the command that downloads the model, the folder layout
    a local copy must have, and how to point the program at it (`--model` or `SPLATEDIT_MODEL`).
    """


def default_model_spec() -> str:
    """The model used when none is given: `$SPLATEDIT_MODEL` if set and non-empty, else `DEFAULT_MODEL`."""
    return os.environ.get(MODEL_ENV_VAR, "").strip() or DEFAULT_MODEL


@dataclass(frozen=True)
class ModelSpec:
    """A parsed `--model` value (see `parse_model_spec` in loading.py)."""

    kind: str  # "hub" | "local" | "closed-form" | "reference"
    location: str = ""  # the hub id, the directory, or the reference scene's file ("" for closed-form)
    colour: tuple[float, float, float] | None = None  # closed-form target colour, RGB in [0, 1]

    @property
    def is_closed_form(self) -> bool:
        """True for the weight-free priors (a colour, or a reference scene): nothing to download."""
        return self.kind in ("closed-form", "reference")

    def __str__(self) -> str:
        if self.colour is not None:
            from ..colour import to_hex

            return f"closed-form:{to_hex(self.colour)}"
        if self.kind == "reference":
            return f"reference:{self.location}"
        return self.location


@dataclass(frozen=True)
class Condition:
    """What one prompt means to one model. Losses get it from `model.condition(...)` and only pass it back.

    A diffusers model fills `embeddings` (text-encoder output; SD3-class models also `pooled`); the closed-form
    prior fills `mean` (the mean of the prompt's data distribution, in latent space).
    """

    prompt: str
    embeddings: Tensor | None = None  # [1 or B, L, D] text embeddings
    pooled: Tensor | None = None  # [1 or B, P] pooled text embeddings (SD3-class models, flow_model.py)
    mean: Tensor | None = None  # [1 or B, C, h, w] closed-form distribution mean, latent space


@runtime_checkable
class DiffusionModel(Protocol):
    """What the losses need from a diffusion model. All tensors it returns are float32 on `device`."""

    name: str  # the spec it was loaded from, for logs and the UI
    device: torch.device
    dtype: torch.dtype  # compute dtype of the network (fp16 on CUDA, fp32 on CPU)
    latent_scale: int  # image pixels per latent pixel along each axis (8 for SD, 1 for closed-form)
    latent_channels: int
    num_train_timesteps: int  # T
    alphas_cumprod: Tensor  # [T] float32, abar_t
    prediction_type: str  # what the network predicts natively: "epsilon" | "v_prediction" | "sample" | "flow"

    def encode_images(self, images: Tensor) -> Tensor:
        """[B, H, W, 3] in [0, 1] -> latents [B, C, H/f, W/f]; differentiable w.r.t. the images."""
        ...

    def decode_latents(self, latents: Tensor) -> Tensor:
        """latents [B, C, h, w] -> images [B, h*f, w*f, 3] in [0, 1]."""
        ...

    def condition(self, prompt: str, *, original: Tensor | None = None) -> Condition:
        """The conditioning for `prompt` (cached per prompt for text encoders).

        `original` ([B, C, h, w] latents of the views the prompt *describes*, e.g. the DDS source prompt
        describes the original renders) is ignored by diffusion models; the closed-form prior centres the
        prompt's distribution on it.
        """
        ...

    def predict_noise(
        self,
        latents_t: Tensor,  # [B, C, h, w] noisy latents
        t: Tensor,  # [B] long timesteps
        cond: Condition,
        *,
        guidance_scale: float,
        uncond: Condition | None = None,  # None: the model's empty-prompt condition
    ) -> Tensor:
        """Epsilon prediction with classifier-free guidance, [B, C, h, w] float32.

        eps_hat = eps(uncond) + guidance_scale * (eps(cond) - eps(uncond)). The closed-form prior has one
        distribution per condition (its conditional and unconditional predictions coincide), so it ignores
        `guidance_scale` and `uncond`.
        """
        ...


class LossOutput(NamedTuple):
    """A loss value to backpropagate and float diagnostics (`loss`, `t`, `grad_norm`, per-term values...)."""

    loss: Tensor  # scalar
    info: dict[str, float]


class GuidanceLoss(Protocol):
    """The call shape shared by `SDSLoss`, `DDSLoss` and `RoMaPLoss`.

    `images` are the current renders (requires_grad). Keywords a loss does not use are accepted and ignored, so
    the edit loop calls every method the same way. `originals` are the renders of the same views before the
    edit (DDS needs them; RoMaP needs them to make anchors unless `anchors` is given). `anchors` are RoMaP's
    part-edited images for these views (see `RoMaPLoss.make_anchors`).
    """

    def __call__(
        self,
        images: Tensor,  # [B, H, W, 3] in [0, 1], requires grad
        *,
        step: int,
        total_steps: int,
        mask2d: Tensor | None = None,  # [B, H, W, 1] in [0, 1]
        originals: Tensor | None = None,  # [B, H, W, 3] in [0, 1]
        anchors: Tensor | None = None,  # [B, H, W, 3] in [0, 1]
        generator: torch.Generator | None = None,
    ) -> LossOutput: ...


def classifier_free_guidance(eps_uncond: Tensor, eps_cond: Tensor, guidance_scale: float) -> Tensor:
    """eps_uncond + s * (eps_cond - eps_uncond): s = 1 is the conditional model, s > 1 extrapolates."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def epsilon_from_prediction(
    prediction: Tensor,  # [B, C, h, w] network output
    latents_t: Tensor,  # [B, C, h, w]
    alpha_bar: Tensor,  # [B] abar_t of each sample
    prediction_type: str,
) -> Tensor:
    """Convert a network output to epsilon.

    v = sqrt(abar) eps - sqrt(1-abar) x0 and x_t = sqrt(abar) x0 + sqrt(1-abar) eps give
    eps = sqrt(abar) v + sqrt(1-abar) x_t; from x0: eps = (x_t - sqrt(abar) x0) / sqrt(1-abar).
    """
    a = alpha_bar.to(latents_t.dtype).reshape(-1, *([1] * (latents_t.dim() - 1)))
    if prediction_type == "epsilon":
        return prediction
    if prediction_type == "v_prediction":
        return a.sqrt() * prediction + (1 - a).sqrt() * latents_t
    if prediction_type == "sample":
        return (latents_t - a.sqrt() * prediction) / (1 - a).clamp_min(1e-8).sqrt()
    raise ValueError(f"unknown prediction type {prediction_type!r} (expected epsilon, v_prediction or sample)")


def randn(shape: tuple[int, ...], *, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal float32 noise drawn on the generator's device (CPU by default), then moved to `device`.

    Drawing on the generator's device keeps a CPU-seeded run reproducible whatever device computes it.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)
