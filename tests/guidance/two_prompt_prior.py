"""A closed-form Gaussian prior whose prompts differ: the variants' formulas need eps(y) != eps("").

The project's closed-form prior (engine/guidance/closed_form.py) has one distribution per prompt, so classifier-
free guidance does nothing there and CSD, NFSD's condition term or LUSD's delta are zero. Here each prompt text
has its own constant-colour Gaussian (`means`, colour per prompt; any other prompt: `target`) and
`predict_noise` applies guidance exactly: eps(uncond) + s (eps(cond) - eps(uncond)). A condition made with
`original=` is centred on those latents (as the closed-form prior does for DDS's source prompt). Not a
`ClosedFormPrior`, so the edit neither recolours it into a reference prior nor refuses CSD on it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.guidance.base import Condition
from engine.guidance.closed_form import closed_form_epsilon, sd_alphas_cumprod


def colour_latent(rgb) -> Tensor:
    """[1, 3, 1, 1] latent of a constant colour (pixel space mapped to [-1, 1])."""
    return torch.tensor(rgb, dtype=torch.float32).reshape(1, 3, 1, 1) * 2.0 - 1.0


class TwoPromptPrior:
    latent_scale = 1
    latent_channels = 3
    prediction_type = "epsilon"

    def __init__(self, target=(0.8, 0.1, 0.1), means: dict | None = None, data_std: float = 0.05) -> None:
        self.name, self.device, self.dtype = "two-prompt", torch.device("cpu"), torch.float32
        self.alphas_cumprod = sd_alphas_cumprod()
        self.num_train_timesteps = 1000
        self.data_std = data_std
        self.target = colour_latent(target)
        self.means = {prompt: colour_latent(rgb) for prompt, rgb in {"": (0.5, 0.5, 0.5), **(means or {})}.items()}

    def encode_images(self, images: Tensor) -> Tensor:
        return images.permute(0, 3, 1, 2).float() * 2.0 - 1.0

    def decode_latents(self, latents: Tensor) -> Tensor:
        return ((latents + 1.0) / 2.0).clamp(0, 1).permute(0, 2, 3, 1)

    def condition(self, prompt: str, *, original: Tensor | None = None) -> Condition:
        if original is not None:
            return Condition(prompt, mean=original.detach().float())
        return Condition(prompt, mean=self.means.get(prompt, self.target))

    def epsilon(self, latents_t: Tensor, t: Tensor, prompt: str) -> Tensor:
        """The exact unguided epsilon of `prompt`'s Gaussian (for hand computations in the tests)."""
        return closed_form_epsilon(latents_t, self.alphas_cumprod[t], self.condition(prompt).mean, self.data_std)

    def predict_noise(self, latents_t: Tensor, t: Tensor, cond: Condition, *, guidance_scale: float,
                      uncond: Condition | None = None) -> Tensor:
        abar = self.alphas_cumprod[t]
        eps_c = closed_form_epsilon(latents_t, abar, cond.mean, self.data_std)
        if guidance_scale == 1.0:
            return eps_c
        eps_u = closed_form_epsilon(latents_t, abar, (uncond or self.condition("")).mean, self.data_std)
        return eps_u + guidance_scale * (eps_c - eps_u)
