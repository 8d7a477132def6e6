"""Loading an SD3-class (rectified-flow) pipeline from the diffusers layout: `load_flow_model`.

Layout (what StableDiffusion3Pipeline.save_pretrained writes): `transformer/` (SD3Transformer2DModel), `vae/`
(AutoencoderKL with 16 latent channels, scaling and shift factors), `text_encoder/` + `tokenizer/` (CLIP-L),
`text_encoder_2/` + `tokenizer_2/` (CLIP-G), optionally `text_encoder_3/` + `tokenizer_3/` (T5; a model saved
without it, or with `"text_encoder_3": [null, null]` in model_index.json, runs without T5), and `scheduler/`
(FlowMatchEulerDiscreteScheduler: only num_train_timesteps and shift are read). `loading.load_guidance` detects
the family from the config and calls this; every weight load goes through `loading.load_weights` (which holds
WEIGHTS_LOCK and prefers the fp16 files in fp16). bf16 is the default compute dtype on GPUs that have it
(`flow_default_dtype`): SD3.5 is released for bf16, and T5 overflows in fp16.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .base import ModelSpec
from .flow_model import FlowModel, flow_sigmas
from .flow_text import FlowTextEncoders

FLOW_SUBFOLDERS = ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "transformer", "vae", "scheduler")
T5_SUBFOLDERS = ("tokenizer_3", "text_encoder_3")


def flow_default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a CUDA GPU that supports it, else fp16 on CUDA, fp32 elsewhere."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def wants_t5(spec: ModelSpec, index: dict | None) -> bool:
    """Whether the model has a T5 encoder: model_index.json names one (not null), or a local folder holds it."""
    if index is not None and "text_encoder_3" in index:
        entry = index["text_encoder_3"]
        return bool(entry) and entry[0] is not None
    if spec.kind == "local":
        return all((Path(spec.location) / s).is_dir() for s in T5_SUBFOLDERS)
    return False


def load_flow_model(spec: ModelSpec, *, device: torch.device, dtype: torch.dtype, index: dict | None,
                    unavailable) -> FlowModel:
    """The SD3-class model at `spec` (a hub id or a local folder). `index` is its model_index.json (None when
    it has none); `unavailable(spec, reason)` makes the loader's ModelUnavailableError."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from transformers import AutoTokenizer, CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel

    from .loading import FP16_VARIANT, load_weights

    source = spec.location
    variant = FP16_VARIANT if dtype == torch.float16 else None

    def weights(cls, subfolder):
        return load_weights(cls, source, subfolder, variant=variant, torch_dtype=dtype)

    try:
        tokenizers = [CLIPTokenizer.from_pretrained(source, subfolder=s) for s in ("tokenizer", "tokenizer_2")]
        encoders = [weights(CLIPTextModelWithProjection, s) for s in ("text_encoder", "text_encoder_2")]
        if wants_t5(spec, index):
            tokenizers.append(AutoTokenizer.from_pretrained(source, subfolder="tokenizer_3"))
            encoders.append(weights(T5EncoderModel, "text_encoder_3"))
        transformer = weights(SD3Transformer2DModel, "transformer")
        vae = weights(AutoencoderKL, "vae")
        scheduler = scheduler_config(spec)
    except (OSError, ValueError) as exc:
        raise unavailable(spec, " ".join(str(exc).split()) or type(exc).__name__) from exc
    text = FlowTextEncoders(tokenizers, [e.to(device) for e in encoders],
                            joint_dim=transformer.config.joint_attention_dim, device=device)
    sigmas = flow_sigmas(int(scheduler.get("num_train_timesteps", 1000)), float(scheduler.get("shift", 1.0)))
    return FlowModel(text=text, transformer=transformer.to(device), vae=vae.to(device), sigmas=sigmas,
                     device=device, dtype=dtype, name=str(spec))


def scheduler_config(spec: ModelSpec) -> dict:
    """The scheduler's config dict (scheduler/scheduler_config.json), locally or from the hub cache/online."""
    if spec.kind == "local":
        return json.loads((Path(spec.location) / "scheduler" / "scheduler_config.json").read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(spec.location, "scheduler_config.json", subfolder="scheduler")).read_text())
