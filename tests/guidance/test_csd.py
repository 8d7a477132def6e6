"""CSD: the classifier score alone. Zero at guidance scale 1, noise-free and image-independent on Gaussian priors."""

from __future__ import annotations

import pytest
import torch

from engine.guidance.csd import CSDLoss

from .two_prompt_prior import TwoPromptPrior, colour_latent


def _latents(seed: int) -> torch.Tensor:
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_guidance_scale_one_is_exactly_zero_although_the_prompts_differ():
    prior = TwoPromptPrior()
    z, t = _latents(0), torch.tensor([100, 700])
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    eps_c, eps_u = prior.epsilon(z, t, "red"), prior.epsilon(z, t, "")
    assert float((eps_c - eps_u).abs().max()) > 0.01  # the prompts do differ here
    assert torch.equal(CSDLoss(prior, "red", guidance_scale=1.0).gradient(z, t, noise), torch.zeros_like(z))


@pytest.mark.parametrize("t", [50, 500, 950])
def test_gradient_is_the_hand_derived_constant_push_from_uncond_to_cond(t):
    """eps_c - eps_u = sqrt(a (1 - a)) (mu_u - mu_c) / (a s^2 + 1 - a): neither the noise nor the image enters."""
    prior, scale = TwoPromptPrior(target=(0.8, 0.1, 0.1)), 3.0
    a, s2 = float(prior.alphas_cumprod[t]), prior.data_std**2
    expected = (1 - a) * (scale - 1) * (a * (1 - a)) ** 0.5 * (colour_latent((0.5, 0.5, 0.5)) - colour_latent(
        (0.8, 0.1, 0.1))) / (a * s2 + 1 - a)
    loss = CSDLoss(prior, "red", guidance_scale=scale)
    for seed in range(3):
        noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        grad = loss.gradient(_latents(seed + 10), torch.tensor([t, t]), noise)
        assert torch.allclose(grad, expected.expand_as(grad), atol=1e-5)


def test_mask_confines_the_gradient_and_info_names_the_method():
    images = torch.rand(2, 8, 8, 3, requires_grad=True)
    mask = torch.zeros(2, 8, 8, 1)
    mask[:, :, :4] = 1.0
    out = CSDLoss(TwoPromptPrior(), "red")(images, step=0, total_steps=5, mask2d=mask,
                                            generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert float(images.grad[:, :, 4:].abs().max()) == 0.0 < float(images.grad[:, :, :4].abs().max())
    assert {"loss", "csd", "t", "grad_norm"} <= set(out.info)
