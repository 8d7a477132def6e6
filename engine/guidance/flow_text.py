"""SD3-class text conditioning: two CLIP encoders and an optional T5, as the SD3 pipeline combines them.

SD3's transformer reads two things per prompt:

- a token sequence [1, L_clip + L_t5, D]: the penultimate hidden states of CLIP-L and CLIP-G concatenated along
  features (768 + 1280 = 2048 for SD3), zero-padded to T5's width D (4096), followed by T5's last hidden
  states. Without a T5 encoder (SD3 can run without it: smaller, faster, slightly worse on long prompts) the
  T5 part is L_clip zero tokens of width D, which is what the SD3 pipeline feeds in that case;
- a pooled vector [1, P]: both CLIP encoders' projected end-of-text embeddings concatenated (768 + 1280).

The CLIP tokens come first, so a word's CLIP token positions (attention_maps.token_positions with the first
tokenizer) are its positions in the sequence too; its T5 positions follow after `clip_length`.
Each prompt is encoded once and cached (the empty prompt is the unconditional condition).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

T5_LENGTH = 256  # tokens of T5 context the SD3 pipeline uses by default (max_sequence_length)


class FlowTextEncoders:
    """The SD3 text stack: `encode(prompts)` -> (sequence [B, L, D], pooled [B, P]) float, cached per prompt."""

    def __init__(self, tokenizers: list, encoders: list, *, joint_dim: int, device: torch.device) -> None:
        """`tokenizers` / `encoders`: [CLIP-L, CLIP-G] or [CLIP-L, CLIP-G, T5] (transformers models; the CLIP
        ones with projection). `joint_dim` is the transformer's joint_attention_dim (T5's width)."""
        if len(tokenizers) not in (2, 3) or len(encoders) != len(tokenizers):
            raise ValueError("an SD3-class model needs two CLIP tokenizers/encoders and optionally a T5 pair")
        self.tokenizers, self.encoders = tokenizers, encoders
        for encoder in encoders:
            encoder.requires_grad_(False).eval()
        self.joint_dim, self.device = int(joint_dim), device
        self.clip_length = min(int(tokenizers[0].model_max_length),
                               int(encoders[0].config.max_position_embeddings))
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def has_t5(self) -> bool:
        return len(self.encoders) == 3

    def _clip(self, index: int, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """(penultimate hidden states [B, L, d], projected pooled embedding [B, p]) of CLIP encoder `index`."""
        tokens = self.tokenizers[index](prompts, padding="max_length", max_length=self.clip_length,
                                        truncation=True, return_tensors="pt")
        out = self.encoders[index](tokens.input_ids.to(self.device), output_hidden_states=True)
        return out.hidden_states[-2], out.text_embeds

    def _t5(self, prompts: list[str], like: Tensor) -> Tensor:
        """T5's last hidden states [B, L_t5, D], or the pipeline's zero stand-in [B, clip_length, D]."""
        if not self.has_t5:
            return torch.zeros(len(prompts), self.clip_length, self.joint_dim, dtype=like.dtype, device=like.device)
        length = min(T5_LENGTH, int(self.tokenizers[2].model_max_length))
        tokens = self.tokenizers[2](prompts, padding="max_length", max_length=length, truncation=True,
                                    return_tensors="pt")
        return self.encoders[2](tokens.input_ids.to(self.device))[0]

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """(sequence [len(prompts), L, D], pooled [len(prompts), P]) in the encoders' dtype."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if todo:
            hidden_l, pooled_l = self._clip(0, todo)
            hidden_g, pooled_g = self._clip(1, todo)
            clip = torch.cat([hidden_l, hidden_g], dim=-1)
            if clip.shape[-1] > self.joint_dim:
                raise ValueError(f"CLIP features ({clip.shape[-1]}) exceed the transformer's width ({self.joint_dim})")
            clip = F.pad(clip, (0, self.joint_dim - clip.shape[-1]))
            t5 = self._t5(todo, clip).to(clip.dtype)
            sequence = torch.cat([clip, t5], dim=-2)
            pooled = torch.cat([pooled_l, pooled_g], dim=-1)
            for i, prompt in enumerate(todo):
                self._cache[prompt] = (sequence[i:i + 1], pooled[i:i + 1])
        pairs = [self._cache[p] for p in prompts]
        return torch.cat([s for s, _ in pairs]), torch.cat([p for _, p in pairs])
