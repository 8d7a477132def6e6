"""Turning a `--model` value into a model: `parse_model_spec` and `load_guidance`, the only way one is made.

A Stable-Diffusion-family model is five parts in the diffusers folder layout (`tokenizer/ text_encoder/ unet/
vae/ scheduler/`), each loaded with `from_pretrained(source, subfolder=...)` from a hub id (the local Hugging
Face cache; online unless HF_HUB_OFFLINE=1) or a local directory. fp16 on CUDA, fp32 on CPU; in fp16 the
hub's fp16 weight files (`variant="fp16"`, half the download) are fetched where the model has them, else the
plain ones. Only the noise schedule (alphas_cumprod) and prediction type are read from the scheduler: the losses unroll their own steps.
diffusers and transformers are imported inside the loader, so importing this package stays fast.

Model families. `model_family` reads the model's config, never its name: model_index.json's components (a
`unet` means the SD family; a `transformer` with a FlowMatch* scheduler means an SD3-class rectified-flow model,
loaded by flow_loading.py into a `FlowModel`), or, for a local folder without model_index.json, its subfolders
and scheduler/scheduler_config.json's class. Other combinations (e.g. a transformer with a DDPM-type scheduler)
are refused with a clear message.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import torch
from torch import Tensor

from ..colour import parse_colour
from .base import (
    DEFAULT_MODEL,
    MODEL_ENV_VAR,
    Condition,
    ModelSpec,
    ModelSpecError,
    ModelUnavailableError,
    classifier_free_guidance,
    default_model_spec,
    epsilon_from_prediction,
)
from .closed_form import ClosedFormPrior

FP16_VARIANT = "fp16"  # weight-file variant fetched when the model runs in fp16 (CUDA), see load_weights
SUBFOLDERS = ("tokenizer", "text_encoder", "unet", "vae", "scheduler")  # a local model's diffusers layout
CLOSED_FORM_PREFIX = "closed-form:"
REFERENCE_PREFIX = "reference:"
# One weight load at a time in this process. diffusers and transformers build a model's modules on the "meta"
# device and fill them afterwards, and accelerate does that by patching torch.nn.Module for the whole process
# while it runs: a second load on another thread meanwhile builds its modules on "meta" too and fails
# ("Unsupported device type 'meta'", "Cannot copy out of meta tensor"). Two sessions loading models, or a load
# still running after its job was cancelled, must wait for each other instead. Every from_pretrained of weights
# in the engine holds it.
WEIGHTS_LOCK = threading.RLock()
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


DIFFUSION_FAMILY, FLOW_FAMILY = "diffusion", "flow"


def read_model_index(spec: ModelSpec) -> dict | None:
    """model_index.json of a local folder or hub model (cache or online, by the offline rules), or None when
    there is none or it cannot be had (the part loaders then report what is missing). Malformed JSON in a local
    folder is a ValueError."""
    if spec.kind == "local":
        file = Path(spec.location) / "model_index.json"
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file} is not valid JSON ({exc})") from None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(spec.location, "model_index.json")).read_text())
    except Exception:  # noqa: BLE001 - offline, not cached, no such file: the part loaders say what is missing
        return None


def _component(index: dict, name: str) -> str | None:
    """The class name model_index.json gives component `name`, or None when absent or null."""
    entry = index.get(name)
    return entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] is not None else None


def model_family(index: dict | None, folder: str | os.PathLike | None = None) -> str:
    """DIFFUSION_FAMILY or FLOW_FAMILY from the config (see the module docstring); ValueError when unsupported.
    `folder` (a local model) is read when there is no model_index.json."""
    if index is not None:
        has_unet, has_transformer = _component(index, "unet"), _component(index, "transformer")
        scheduler = _component(index, "scheduler")
    elif folder is not None:
        has_unet, has_transformer = (Path(folder) / "unet").is_dir(), (Path(folder) / "transformer").is_dir()
        config = Path(folder) / "scheduler" / "scheduler_config.json"
        try:
            scheduler = json.loads(config.read_text()).get("_class_name") if config.is_file() else None
        except json.JSONDecodeError:
            scheduler = None
    else:
        return DIFFUSION_FAMILY
    if has_unet or not has_transformer:
        return DIFFUSION_FAMILY  # (no denoiser at all: the SD loader names what is missing)
    if scheduler is None or str(scheduler).startswith("FlowMatch"):
        if isinstance(has_transformer, str) and has_transformer != "SD3Transformer2DModel":
            raise ValueError(f"a {has_transformer} rectified-flow model is not supported: of the flow family, "
                             "SD3-class models (SD3Transformer2DModel: SD3, SD3.5) are")
        return FLOW_FAMILY
    raise ValueError(f"a transformer model with a {scheduler} scheduler is not supported: Stable Diffusion 1.5-family "
                     "(unet/) and SD3-class rectified-flow (transformer/ + FlowMatch scheduler) models are")


def required_subfolders(folder: str | os.PathLike) -> tuple[str, ...]:
    """The subfolders the loader reads for the folder's family (SUBFOLDERS for the SD family)."""
    from .flow_loading import FLOW_SUBFOLDERS

    try:
        family = model_family(read_model_index(ModelSpec("local", os.fspath(folder))), folder)
    except ValueError:
        return SUBFOLDERS
    return FLOW_SUBFOLDERS if family == FLOW_FAMILY else SUBFOLDERS


def missing_subfolders(folder: str | os.PathLike) -> list[str]:
    """The subfolders of its family's layout `folder` lacks, in order; empty when it has the layout
    `load_guidance` reads. The one layout check: the loader and the availability probe (availability.py) both
    ask it."""
    return [s for s in required_subfolders(folder) if not (Path(folder) / s).is_dir()]


def _closed_form_colour(text: str) -> tuple[float, float, float]:
    """The colour of `closed-form:<colour>` (engine.colour's grammar); a bad one is a malformed spec."""
    try:
        return parse_colour(text)
    except ValueError as exc:
        raise ModelSpecError(f"closed-form model: {exc} (e.g. closed-form:#d02020)") from None


def parse_model_spec(spec: str | os.PathLike | None = None) -> ModelSpec:
    """A hub id, an existing local directory, or `closed-form:<colour>`; None means `default_model_spec()`."""
    text = (default_model_spec() if spec is None else os.fspath(spec)).strip()
    if not text:
        raise ModelSpecError(f"empty model: give a hub id (e.g. {DEFAULT_MODEL}), a directory, or closed-form:<colour>")
    if text.lower().startswith("closed-form"):
        if not text.lower().startswith(CLOSED_FORM_PREFIX) or not text[len(CLOSED_FORM_PREFIX):].strip():
            raise ModelSpecError(f"closed-form model needs a colour, e.g. closed-form:#d02020 (got {text!r})")
        return ModelSpec("closed-form", colour=_closed_form_colour(text[len(CLOSED_FORM_PREFIX):]))
    if text.lower().startswith(REFERENCE_PREFIX):
        file = Path(text[len(REFERENCE_PREFIX):].strip()).expanduser()
        if not file.is_file():
            raise ModelSpecError(f"reference model needs an existing scene file, e.g. reference:edited.ply (got {text!r})")
        return ModelSpec("reference", str(file.resolve()))
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSpec("local", str(path.resolve()))
    if path.exists():
        raise ModelSpecError(f"model {text!r} is a file; a local model is a directory with {', '.join(SUBFOLDERS)}/")
    if text.startswith((".", "/", "~", "\\")) or not _HUB_ID.fullmatch(text):
        raise ModelSpecError(
            f"model {text!r} is neither an existing directory, a Hugging Face hub id (owner/name), "
            "nor closed-form:<colour>"
        )
    return ModelSpec("hub", text)


def _unavailable(spec: ModelSpec, reason: str) -> ModelUnavailableError:
    where = f"local directory {spec.location}" if spec.kind == "local" else f"hub model {spec.location}"
    hub_id = spec.location if spec.kind == "hub" else DEFAULT_MODEL
    maybe_path = ""
    if spec.kind == "hub" and "/" in spec.location:
        maybe_path = f" (no directory {Path(spec.location).resolve()} exists either)"
    return ModelUnavailableError(
        f"cannot load the diffusion model from the {where}{maybe_path}: {reason}\n"
        f"To get it, download it once while online:  hf download {hub_id} --local-dir models/{hub_id.split('/')[-1]}\n"
        f"(or let it fill the Hugging Face cache: the same command without --local-dir). A local model is a folder "
        f"in the diffusers layout with {', '.join(s + '/' for s in SUBFOLDERS)} (what save_pretrained writes; an "
        f"SD3-class model has transformer/ and two text encoders instead of unet/).\n"
        f"Then pass it with --model <hub id or folder>, or set {MODEL_ENV_VAR}. "
        f"Without weights, --model closed-form:#d02020 runs the offline closed-form prior."
    )


def load_guidance(
    spec: str | os.PathLike | ModelSpec | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
):
    """The model a `--model` value names: a `DiffusersModel` (SD family), a `FlowModel` (SD3 class: the family is
    read from the config, `model_family`), or a `ClosedFormPrior` / `ReferencePrior` for the weight-free specs.

    device defaults to CUDA when available; dtype to fp16 on CUDA (bf16 for the flow family where the GPU has it)
    and fp32 elsewhere. Raises `ModelSpecError`
    for a malformed spec and `ModelUnavailableError` (with download instructions) when weights cannot be had.
    """
    spec = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if spec.kind == "reference":
        from ..io import load
        from .reference import ReferencePrior

        try:
            reference = load(spec.location)
        except (OSError, ValueError) as exc:
            raise ModelSpecError(f"cannot read the reference scene {spec.location}: {exc}") from exc
        return ReferencePrior(reference, name=str(spec))  # no render_fn: the loop that runs it hands one over
    if spec.is_closed_form:
        return ClosedFormPrior(spec.colour, device=device, name=str(spec))
    if spec.kind == "local":
        missing = missing_subfolders(spec.location)
        if missing:
            raise _unavailable(spec, f"missing subfolder(s) {', '.join(s + '/' for s in missing)}")
    try:
        index = read_model_index(spec)
        family = model_family(index, spec.location if spec.kind == "local" else None)
    except ValueError as exc:
        raise _unavailable(spec, str(exc)) from None
    if family == FLOW_FAMILY:
        from .flow_loading import flow_default_dtype, load_flow_model

        dtype = dtype if dtype is not None else flow_default_dtype(device)
        return load_flow_model(spec, device=device, dtype=dtype, index=index, unavailable=_unavailable)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    return DiffusersModel.from_pretrained(spec, device=device, dtype=dtype)


def load_weights(cls, source: str, subfolder: str, *, variant: str | None, **kwargs):
    """`cls.from_pretrained(source, subfolder=...)`, preferring the `variant` weight files (e.g. the hub's
    `diffusion_pytorch_model.fp16.safetensors`: half the download of the fp32 files) and falling back to the
    plain files when the repository, the cache or the local folder has no such variant. Offline and local rules
    are from_pretrained's own (HF_HUB_OFFLINE, the cache, a directory path)."""
    with WEIGHTS_LOCK:
        if variant is not None:
            try:
                return cls.from_pretrained(source, subfolder=subfolder, variant=variant, **kwargs)
            except (OSError, ValueError):
                pass  # no variant files there: the plain ones below (their error, if any, is the one reported)
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)


class DiffusersModel:
    """A Stable-Diffusion-family model behind the `DiffusionModel` protocol (see base.py)."""

    def __init__(
        self,
        *,
        tokenizer,  # transformers CLIPTokenizer
        text_encoder,  # transformers CLIPTextModel
        unet,  # diffusers UNet2DConditionModel
        vae,  # diffusers AutoencoderKL
        alphas_cumprod: Tensor,  # [T]
        prediction_type: str,
        device: torch.device,
        dtype: torch.dtype,
        name: str,
    ) -> None:
        self.tokenizer, self.text_encoder, self.unet, self.vae = tokenizer, text_encoder, unet, vae
        for module in (text_encoder, unet, vae):
            module.requires_grad_(False).eval()
        self.device, self.dtype, self.name = device, dtype, name
        self.alphas_cumprod = alphas_cumprod.to(device, torch.float32)
        self.num_train_timesteps = int(self.alphas_cumprod.shape[0])
        self.prediction_type = prediction_type
        self.latent_channels = int(vae.config.latent_channels)
        self.latent_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        sample = unet.config.sample_size
        sample = sample if isinstance(sample, int) else max(sample)  # some configs give (h, w)
        self.image_size = int(sample) * self.latent_scale  # native size (512 for SD 1.5): see native_size.py
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self._embeddings: dict[str, Tensor] = {}

    @classmethod
    def from_pretrained(cls, spec: ModelSpec, *, device: torch.device, dtype: torch.dtype) -> DiffusersModel:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        source = spec.location
        variant = FP16_VARIANT if dtype == torch.float16 else None
        try:
            tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
            text_encoder = load_weights(CLIPTextModel, source, "text_encoder", variant=variant, torch_dtype=dtype)
            unet = load_weights(UNet2DConditionModel, source, "unet", variant=variant, torch_dtype=dtype)
            vae = load_weights(AutoencoderKL, source, "vae", variant=variant, torch_dtype=dtype)
            scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler")
        except (OSError, ValueError) as exc:
            raise _unavailable(spec, " ".join(str(exc).split()) or type(exc).__name__) from exc
        prediction_type = scheduler.config.prediction_type
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise _unavailable(spec, f"unsupported prediction type {prediction_type!r}")
        return cls(
            tokenizer=tokenizer,
            text_encoder=text_encoder.to(device),
            unet=unet.to(device),
            vae=vae.to(device),
            alphas_cumprod=scheduler.alphas_cumprod.float(),
            prediction_type=prediction_type,
            device=device,
            dtype=dtype,
            name=str(spec),
        )

    # --- text ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> Tensor:
        """[len(prompts), L, D] CLIP hidden states, each prompt encoded once and cached."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        if todo:
            length = min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)
            tokens = self.tokenizer(
                todo, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
            )
            hidden = self.text_encoder(tokens.input_ids.to(self.device))[0]
            for prompt, h in zip(todo, hidden):
                self._embeddings[prompt] = h.unsqueeze(0)
        return torch.cat([self._embeddings[p] for p in prompts])

    def condition(self, prompt: str, *, original: Tensor | None = None) -> Condition:
        """The prompt's text embeddings; `original` is ignored (the text alone conditions the model)."""
        return Condition(prompt, embeddings=self.text_embeddings([prompt]))

    # --- images <-> latents --------------------------------------------------------------------------
    def encode_images(self, images: Tensor) -> Tensor:
        """[B, H, W, 3] in [0, 1] -> [B, 4, H/8, W/8] float32: the VAE posterior mean (deterministic), scaled."""
        x = images.permute(0, 3, 1, 2).to(self.device, self.dtype) * 2.0 - 1.0
        mean = self.vae.encode(x).latent_dist.mean
        return ((mean.float() - self.shift_factor) * self.scaling_factor)

    def decode_latents(self, latents: Tensor) -> Tensor:
        """[B, 4, h, w] -> [B, 8h, 8w, 3] in [0, 1], float32."""
        z = latents / self.scaling_factor + self.shift_factor
        x = self.vae.decode(z.to(self.dtype)).sample.float()
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1)

    # --- denoising -----------------------------------------------------------------------------------
    def predict_noise(
        self,
        latents_t: Tensor,  # [B, C, h, w]
        t: Tensor,  # [B] long
        cond: Condition,
        *,
        guidance_scale: float,
        uncond: Condition | None = None,
    ) -> Tensor:
        """Epsilon with classifier-free guidance; one UNet pass over [uncond; cond] (cond only when scale == 1)."""
        if cond.embeddings is None:
            raise ValueError(f"condition for {cond.prompt!r} has no text embeddings")
        batch = latents_t.shape[0]
        cond_emb = cond.embeddings.expand(batch, -1, -1)
        if guidance_scale == 1.0:
            latents_in, t_in, emb = latents_t, t, cond_emb
        else:
            uncond = uncond if uncond is not None else self.condition("")
            uncond_emb = uncond.embeddings.expand(batch, -1, -1)
            latents_in, t_in, emb = torch.cat([latents_t, latents_t]), torch.cat([t, t]), torch.cat([uncond_emb, cond_emb])
        out = self.unet(latents_in.to(self.dtype), t_in, encoder_hidden_states=emb.to(self.dtype)).sample.float()
        alpha_bar = self.alphas_cumprod[t_in]
        eps = epsilon_from_prediction(out, latents_in.float(), alpha_bar, self.prediction_type)
        if guidance_scale == 1.0:
            return eps
        eps_uncond, eps_cond = eps.chunk(2)
        return classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)
