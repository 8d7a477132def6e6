"""DreamCatalyst: zero when nothing is asked, the released weights, an identity pull, and a falling t."""

from __future__ import annotations

import math

import pytest
import torch

from engine.guidance import ClosedFormPrior
from engine.guidance.closed_form import closed_form_epsilon
from engine.guidance.dreamcatalyst import DreamCatalystLoss
from engine.guidance.sds import add_noise

PRIOR = ClosedFormPrior((0.8, 0.1, 0.1))


def _views(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 8, 8, 3, generator=g), torch.rand(2, 8, 8, 3, generator=g)


def test_same_prompts_and_unchanged_render_give_exactly_zero(half_mask):
    images, _ = _views(0)
    images.requires_grad_(True)
    out = DreamCatalystLoss(PRIOR, "a red head", "a red head")(
        images, step=0, total_steps=10, mask2d=half_mask, originals=images.detach().clone(),
        generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert float(images.grad.abs().max()) == 0.0


def test_gradient_matches_the_released_weights_by_hand():
    images, originals = _views(1)
    z, zsrc = PRIOR.encode_images(images), PRIOR.encode_images(originals)
    t, noise = torch.tensor([500, 500]), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    a = PRIOR.alphas_cumprod[t]
    eps_tgt = closed_form_epsilon(add_noise(z, noise, a), a, PRIOR.condition("x").mean, PRIOR.data_std)
    eps_src = closed_form_epsilon(add_noise(zsrc, noise, a), a, zsrc, PRIOR.data_std)  # source: the originals
    psi, chi = 0.2 + 0.8 * 0.5 ** (1 / math.e), 0.075 * math.exp(0.5)
    got = DreamCatalystLoss(PRIOR, "red", "blue").gradient(z, zsrc, t, noise)
    assert torch.allclose(got, psi * (eps_tgt - eps_src) + chi * (z - zsrc), atol=1e-5)


def test_with_agreeing_prompts_the_gradient_pulls_the_render_back_to_the_original():
    images, originals = _views(3)
    z, zsrc = PRIOR.encode_images(images), PRIOR.encode_images(originals)
    grad = DreamCatalystLoss(PRIOR, "red", "red").gradient(z, zsrc, torch.tensor([300, 800]), torch.zeros_like(z))
    d = z - zsrc
    c = (grad * d).sum((1, 2, 3)) / (d * d).sum((1, 2, 3))
    assert bool((c > 0).all())
    assert float((grad - c.reshape(-1, 1, 1, 1) * d).norm()) < 1e-4 * float(grad.norm())


def test_default_schedule_falls_from_0_9_to_0_2():
    images, originals = _views(4)
    loss = DreamCatalystLoss(PRIOR, "red", "blue")
    ts = [loss(images, step=i, total_steps=20, originals=originals).info["t"] for i in range(20)]
    assert all(a > b for a, b in zip(ts, ts[1:])) and 0.2 <= ts[-1] < 0.25 and 0.85 < ts[0] <= 0.9


def test_needs_a_source_prompt_and_the_originals():
    with pytest.raises(ValueError, match="source prompt"):
        DreamCatalystLoss(PRIOR, "red", " ")
    with pytest.raises(ValueError, match="original"):
        DreamCatalystLoss(PRIOR, "red", "blue")(torch.rand(1, 8, 8, 3), step=0, total_steps=1)
