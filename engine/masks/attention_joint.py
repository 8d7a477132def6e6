"""Text selection's evidence from an SD3-class transformer: image tokens' joint attention to the part's words.

An SD3 (MMDiT) block has no cross-attention: image tokens and text tokens are concatenated and attend jointly,
softmax(q k^T / sqrt(d)) over ALL keys, image and text. The probability an image token (one 2x2 latent patch)
gives to the part's text tokens is the same evidence SD 1.5's cross-attention gives (attention_maps.py), read
from the joint softmax so that it stays comparable across layers.

`capture_joint_attention` wraps every attention processor of the transformer for a `with` block: the layer's
own processor still computes the output (untouched), and on joint calls (those with text tokens; SD3.5's extra
image-only attention is passed through) the wrapper recomputes the image queries and all keys with the layer's
projections and q/k norms and records the chosen text columns, one head at a time (bounded memory), as an
`AttentionRecord` on the token grid (latent size / patch size). `aggregate_maps(records, grid, (1,))` then
averages heads, tokens and every joint layer into one map per image.

The part's tokens are its CLIP-L token positions, which are its positions in SD3's joint text sequence (the
CLIP tokens come first: guidance/flow_text.py). T5's tokens, when the model has T5, are not read.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from .attention_maps import AttentionRecord, AttentionStore, TokenError


def _heads(x: Tensor, heads: int) -> Tensor:
    """[B, L, heads * d] -> [B, heads, L, d]."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def joint_text_probs(attn, hidden_states: Tensor, encoder_hidden_states: Tensor, tokens: list[int]) -> Tensor:
    """[B, heads, N_image, len(tokens)] float32: each image query's joint-softmax probability of each chosen
    text token (`tokens` index the text sequence). Same projections and norms as diffusers' JointAttnProcessor."""
    heads = attn.heads
    q = _heads(attn.to_q(hidden_states), heads)
    k = _heads(attn.to_k(hidden_states), heads)
    k_text = _heads(attn.add_k_proj(encoder_hidden_states), heads)
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    if getattr(attn, "norm_added_k", None) is not None:
        k_text = attn.norm_added_k(k_text)
    keys = torch.cat([k, k_text], dim=2).float()
    chosen = [hidden_states.shape[1] + i for i in tokens]
    scale = q.shape[-1] ** -0.5
    out = []
    for h in range(heads):  # one head at a time: the [N_image, N_image + L] logits of all heads can be large
        probs = torch.softmax(q[:, h].float() @ keys[:, h].transpose(-1, -2) * scale, dim=-1)
        out.append(probs[..., chosen])
    return torch.stack(out, dim=1)


class JointCapturingProcessor:
    """Wraps a transformer attention processor; records joint attention to `store.tokens` (see module doc)."""

    def __init__(self, name: str, original, store: AttentionStore) -> None:
        self.name, self.original, self.store = name, original, store

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, *args, **kwargs):
        if encoder_hidden_states is not None:
            grid = self.store.latent_hw
            if grid is None or grid[0] * grid[1] != hidden_states.shape[1]:
                raise ValueError(f"AttentionStore.latent_hw must be the token grid ({hidden_states.shape[1]} tokens)")
            with torch.no_grad():
                probs = joint_text_probs(attn, hidden_states, encoder_hidden_states, self.store.tokens)
            batch, heads = probs.shape[:2]
            self.store.records.append(AttentionRecord(
                self.name, grid, probs.reshape(batch, heads, grid[0], grid[1], -1).cpu()))
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


@contextmanager
def capture_joint_attention(transformer, tokens: list[int]) -> Iterator[AttentionStore]:
    """Within the block, every joint attention call of `transformer` appends an `AttentionRecord` to the yielded
    store (set `store.latent_hw` to the token grid before each call); processors restored afterwards."""
    if not tokens:
        raise TokenError("no prompt tokens to capture")
    original = dict(transformer.attn_processors)
    store = AttentionStore(list(tokens))
    transformer.set_attn_processor({n: JointCapturingProcessor(n, p, store) for n, p in original.items()})
    try:
        yield store
    finally:
        transformer.set_attn_processor(dict(original))


class JointAttentionBackend:
    """How text selection (attention.attention_maps) queries a rectified-flow model: noise the latents along the
    flow, run the transformer once on the prompt, read every joint layer on the token grid."""

    factors = (1,)

    def __init__(self, model, prompt: str) -> None:
        self.model = model
        self.cond = model.condition(prompt)

    def capture(self, tokens: list[int]):
        return capture_joint_attention(self.model.transformer, tokens)

    def run(self, latents: Tensor, noise: Tensor, t: Tensor, store: AttentionStore) -> None:
        """One transformer pass on `latents` [B, C, h, w] noised to timesteps `t` [B] with `noise`."""
        from ..guidance.flow_model import flow_noised

        model, p = self.model, self.model.patch_size
        h, w = latents.shape[-2:]
        store.latent_hw = (-(-h // p), -(-w // p))
        x = flow_noised(latents, noise, model.sigmas[t])
        batch = latents.shape[0]
        model.velocity(x, t, self.cond.embeddings.expand(batch, -1, -1), self.cond.pooled.expand(batch, -1))
