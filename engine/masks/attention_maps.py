"""Capturing a diffusers UNet's cross-attention to chosen prompt tokens (the 2D evidence of text selection).

Every cross-attention layer of the UNet computes, per head, softmax(Q K^T * scale) over the prompt's tokens
(scale = 1/sqrt(head dim)): how much each image location attends to each word. `capture_cross_attention`
swaps in our own attention processor for the duration of a `with` block. On cross-attention calls it computes
those probabilities explicitly (the same steps as diffusers' plain AttnProcessor: spatial/group norm, to_q,
to_k, to_v, `attn.get_attention_scores`, to_out), keeps the columns of the chosen tokens, and returns the layer's
normal output; self-attention is handed to the layer's original processor untouched. The original processors
are put back on leaving the block, also when it raises.

`aggregate_maps` turns the records of one UNet call into one map per image: heads averaged, the chosen tokens
averaged, layers at the selected downsampling factors (relative to the latent; 2 and 4 = 32x32 and 16x16 for
SD 1.5's 64x64 latents, the resolutions RoMaP and prompt-to-prompt read) upsampled to the finest of them and
averaged.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


class TokenError(ValueError):
    """The part's words are not in the prompt (or fall beyond the text encoder's token limit)."""


def token_positions(tokenizer, prompt: str, part: str) -> list[int]:
    """Positions, in the padded prompt encoding the text encoder sees, of the tokens of `part`'s words.

    The part's token ids (encoded alone, no special tokens) are looked up as a contiguous run in the prompt's;
    failing that, each of its words is looked up on its own and all found positions are used."""
    part = part.strip()
    if not part:
        raise TokenError("the part to select is empty: name it, e.g. --text scarf")
    limit = int(tokenizer.model_max_length)
    ids = tokenizer(prompt, truncation=True, max_length=limit).input_ids

    def find(run: list[int], within: list[int]) -> list[int] | None:
        for start in range(1, len(within) - len(run) + 1):  # position 0 is the start-of-text token
            if within[start:start + len(run)] == run:
                return list(range(start, start + len(run)))
        return None

    run = tokenizer(part, add_special_tokens=False).input_ids
    found = find(run, ids) if run else None
    if found is None:
        words = [tokenizer(w, add_special_tokens=False).input_ids for w in part.split()]
        hits = [find(w, ids) for w in words if w]
        found = sorted({p for h in hits if h for p in h}) or None
    if found is None:
        full = tokenizer(prompt, truncation=False).input_ids
        if run and len(full) > len(ids) and find(run, full) is not None:
            raise TokenError(f"the part {part!r} comes after the first {limit} tokens of the prompt: shorten the prompt")
        raise TokenError(f"the prompt {prompt!r} does not contain the part {part!r}: name the part in the prompt")
    return found


@dataclass
class AttentionRecord:
    """One cross-attention call: the layer, its spatial size and the chosen tokens' probabilities."""

    layer: str  # the processor's name in `unet.attn_processors`
    size: tuple[int, int]  # (h, w) of the layer's feature map
    probs: Tensor  # [B, heads, h, w, T] float32 attention probabilities of the T chosen tokens


@dataclass
class AttentionStore:
    """What the processors recorded; `latent_hw` must be set before each UNet call (for 3D hidden states)."""

    tokens: list[int]
    latent_hw: tuple[int, int] | None = None
    records: list[AttentionRecord] = field(default_factory=list)

    def clear(self) -> None:
        self.records.clear()


def feature_size(latent_hw: tuple[int, int], length: int) -> tuple[int, int]:
    """(h, w) of a feature map with `length` locations in a UNet fed `latent_hw` latents: the latent size
    divided by a power of two (each down block halves it, rounding up)."""
    h, w = latent_hw
    for _ in range(12):
        if h * w == length:
            return h, w
        h, w = (h + 1) // 2, (w + 1) // 2
    raise ValueError(f"cannot tell the shape of a {length}-location attention map for {latent_hw} latents")


def _divided(latent_hw: tuple[int, int], factor: int) -> tuple[int, int]:
    """The feature size `factor` (a power of two) times smaller than the latent, rounding up like the UNet."""
    h, w = latent_hw
    while factor > 1:
        h, w, factor = (h + 1) // 2, (w + 1) // 2, factor // 2
    return h, w


class CapturingProcessor:
    """A diffusers attention processor that records cross-attention probabilities of `store.tokens`."""

    def __init__(self, name: str, original, store: AttentionStore) -> None:
        self.name, self.original, self.store = name, original, store

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, *args, **kwargs) -> Tensor:
        if encoder_hidden_states is None or not getattr(attn, "is_cross_attention", True):
            return self.original(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                                 attention_mask=attention_mask, temb=temb, *args, **kwargs)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
            size = (height, width)
        else:
            if self.store.latent_hw is None:
                raise ValueError("AttentionStore.latent_hw must be set before the UNet runs")
            size = feature_size(self.store.latent_hw, hidden_states.shape[1])
        batch, length, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key, value = (attn.head_to_batch_dim(x) for x in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)  # [B * heads, HW, L]
        heads = probs.shape[0] // batch
        chosen = probs[:, :, self.store.tokens].detach().float()
        self.store.records.append(AttentionRecord(
            self.name, size, chosen.reshape(batch, heads, size[0], size[1], len(self.store.tokens)).cpu()))
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(residual.shape)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def capture_cross_attention(unet, tokens: list[int]) -> Iterator[AttentionStore]:
    """Within the block, every cross-attention call of `unet` appends an `AttentionRecord` to the yielded
    store; the original processors are restored afterwards (also on exceptions)."""
    if not tokens:
        raise TokenError("no prompt tokens to capture")
    original = dict(unet.attn_processors)
    store = AttentionStore(list(tokens))
    unet.set_attn_processor({name: CapturingProcessor(name, proc, store) for name, proc in original.items()})
    try:
        yield store
    finally:
        unet.set_attn_processor(dict(original))  # set_attn_processor pops from the dict it is given


def aggregate_maps(records: list[AttentionRecord], latent_hw: tuple[int, int],
                   factors: tuple[int, ...] = (2, 4)) -> Tensor:
    """[B, h, w] mean attention map of one UNet call: heads and tokens averaged, the layers whose feature size
    is the latent size / a factor in `factors` (all layers when none is) upsampled bilinearly to the finest
    selected size and averaged."""
    if not records:
        raise ValueError("no cross-attention was recorded (does the UNet have cross-attention layers?)")
    wanted = {_divided(latent_hw, f) for f in factors}
    chosen = [r for r in records if r.size in wanted] or records
    target = max((r.size for r in chosen), key=lambda s: s[0] * s[1])
    maps = []
    for r in chosen:
        m = r.probs.mean(dim=(1, 4))  # [B, h, w]
        if r.size != target:
            m = F.interpolate(m[:, None], size=target, mode="bilinear", align_corners=False)[:, 0]
        maps.append(m)
    return torch.stack(maps).mean(0)
