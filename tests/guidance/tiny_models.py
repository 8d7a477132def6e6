"""Tiny random Stable-Diffusion-shaped pipelines for CPU tests (no weights, no network).

`save_tiny_pipeline(path)` writes the diffusers folder layout (model_index.json, tokenizer/, text_encoder/,
unet/, vae/, scheduler/) so tests can load it through the real `load_guidance(path)`. By default the VAE
downsamples by 2 (two blocks) and the UNet's sample size is 8, so the native image size is 16 (a 16x16 render has
8x8 latents; other sizes are resized to 16x16 by the losses); prompts are tokenized to 16 tokens.
Reuse from other test folders: `from tests.guidance.tiny_models import save_tiny_pipeline`.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

TOKEN_LENGTH = 16
LATENT_SCALE = 2


def tiny_tokenizer():
    """A CLIP BPE tokenizer over single characters (no merges): every lowercase word is spelled out."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        for token in (ch, ch + "</w>"):
            vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TOKEN_LENGTH)


def tiny_parts(
    *, prediction_type: str = "epsilon", seed: int = 0, unet_sample_size: int = 8, vae_levels: int = 2
) -> dict:
    """The five parts with random weights: tokenizer, text_encoder, unet, vae, scheduler.

    The model's native image size is `unet_sample_size * 2 ** (vae_levels - 1)`: 16 by default; `vae_levels=4,
    unet_sample_size=64` gives SD 1.5's shape (8x VAE, 512 px native) with tiny channel counts.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=TOKEN_LENGTH, bos_token_id=0, eos_token_id=1,
            pad_token_id=1, projection_dim=32,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=unet_sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
    )
    channels = (16, 32) if vae_levels == 2 else (8,) * vae_levels
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * vae_levels,
        up_block_types=("UpDecoderBlock2D",) * vae_levels, block_out_channels=channels, latent_channels=4,
        norm_num_groups=8, layers_per_block=1, sample_size=unet_sample_size * 2 ** (vae_levels - 1),
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "unet": unet, "vae": vae, "scheduler": scheduler}


def save_tiny_pipeline(
    path: str | Path, *, prediction_type: str = "epsilon", seed: int = 0, unet_sample_size: int = 8, vae_levels: int = 2
) -> Path:
    """Write a tiny random pipeline in the diffusers layout to `path` and return it.

    Each part is saved with its own save_pretrained; model_index.json is what StableDiffusionPipeline writes
    (written by hand: importing the pipeline classes costs seconds).
    """
    import diffusers
    import transformers

    path = Path(path)
    parts = tiny_parts(prediction_type=prediction_type, seed=seed, unet_sample_size=unet_sample_size,
                       vae_levels=vae_levels)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
    for name, part in parts.items():
        part.save_pretrained(path / name)
        library = "transformers" if name in ("tokenizer", "text_encoder") else "diffusers"
        index[name] = [library, type(part).__name__]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


def tiny_t5():
    """(tokenizer, encoder): a one-character word-level tokenizer (PreTrainedTokenizerFast, 16 tokens) and a
    one-layer T5 encoder 64 wide (the tiny transformer's joint attention width)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", model_max_length=TOKEN_LENGTH)
    encoder = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=64, d_ff=37, d_kv=8, num_layers=1, num_heads=2))
    return tokenizer, encoder


def tiny_flow_parts(*, seed: int = 0, sample_size: int = 8, dual_attention: bool = False, t5: bool = False) -> dict:
    """An SD3-layout pipeline with random weights: two tiny CLIP encoders with projection (32 + 32 features,
    padded to the transformer's 64-wide joint attention), a 2-layer SD3Transformer2DModel (patch 2), a 16-channel
    VAE that downsamples by 2 with SD3's scaling and shift factors, a FlowMatchEulerDiscreteScheduler (shift 3);
    T5 (`tiny_t5`) only with `t5`. Native size `sample_size * 2` = 16 px. `dual_attention` makes the first layer
    an SD3.5-style MMDiT-X block (an extra image-only attention)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    parts: dict = {}
    for suffix in ("", "_2"):
        tokenizer = tiny_tokenizer()
        parts["tokenizer" + suffix] = tokenizer
        parts["text_encoder" + suffix] = CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=TOKEN_LENGTH, bos_token_id=0, eos_token_id=1,
            pad_token_id=1, projection_dim=32,
        ))
    parts["transformer"] = SD3Transformer2DModel(
        sample_size=sample_size, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
        out_channels=16, pos_embed_max_size=16, dual_attention_layers=(0,) if dual_attention else (),
    )
    parts["vae"] = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), latent_channels=16,
        norm_num_groups=8, layers_per_block=1, sample_size=sample_size * 2, scaling_factor=1.5305,
        shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
    )
    parts["scheduler"] = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    if t5:
        parts["tokenizer_3"], parts["text_encoder_3"] = tiny_t5()
    return parts


def save_tiny_flow_pipeline(
    path: str | Path, *, seed: int = 0, dual_attention: bool = False, t5: bool = False
) -> Path:
    """Write a tiny random SD3-layout pipeline (see `tiny_flow_parts`) to `path`; model_index.json as
    StableDiffusion3Pipeline writes it, T5 (tokenizer_3, text_encoder_3) null unless `t5`."""
    import diffusers

    path = Path(path)
    index = {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": diffusers.__version__,
             "tokenizer_3": [None, None], "text_encoder_3": [None, None]}
    for name, part in tiny_flow_parts(seed=seed, dual_attention=dual_attention, t5=t5).items():
        part.save_pretrained(path / name)
        library = "transformers" if name.startswith(("tokenizer", "text_encoder")) else "diffusers"
        index[name] = [library, type(part).__name__]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path
