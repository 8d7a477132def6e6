"""A tiny random CLIP (transformers layout) saved to a folder, for loading through engine.evaluate.clip.load_clip."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.guidance.tiny_models import TOKEN_LENGTH, tiny_tokenizer

IMAGE_SIZE = 32


def save_tiny_clip(path: str | Path, *, seed: int = 0, processor: bool = True) -> Path:
    """config.json + weights + tokenizer (+ preprocessor_config.json) of a random 2-layer CLIP."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    path = Path(path)
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=TOKEN_LENGTH, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, intermediate_size=37,
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    if processor:
        CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                           image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]).save_pretrained(path)
    return path
