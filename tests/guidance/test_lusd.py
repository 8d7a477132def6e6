"""LUSD: normalized, localized updates; an unfocused delta is redrawn; the schedule of its step size."""

from __future__ import annotations

import pytest
import torch

from engine.guidance import ClosedFormPrior
from engine.guidance.lusd import LUSDLoss, direction_scale, masked_std



def _views(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 8, 8, 3, generator=g, requires_grad=True), torch.rand(2, 8, 8, 3, generator=g)


def test_update_has_the_scheduled_size_inside_the_mask_and_none_outside(half_mask):
    images, originals = _views(0)
    loss = LUSDLoss(ClosedFormPrior((0.8, 0.1, 0.1)), "red", "a blue head")
    out = loss(images, step=3, total_steps=10, mask2d=half_mask, originals=originals,
               generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert float(images.grad[:, :, 4:].abs().max()) == 0.0 < float(images.grad[:, :, :4].abs().max())
    z = ClosedFormPrior((0, 0, 0)).encode_images(images.detach())
    zsrc = ClosedFormPrior((0, 0, 0)).encode_images(originals)
    mask = half_mask.permute(0, 3, 1, 2)
    delta = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    d = loss.direction(z, zsrc, delta, 0.05, mask=mask)
    assert torch.allclose(masked_std(d, mask), torch.full((2,), 0.05), atol=1e-6)
    assert out.info["redraws"] == 0.0 and out.info["delta_std"] > loss.threshold


def test_without_a_focused_delta_every_redraw_is_spent_and_only_the_pull_to_the_original_remains():
    """The source prompt describes the originals, which already are the target colour: delta = 0 at every draw."""
    red = (0.8, 0.1, 0.1)
    prior = ClosedFormPrior(red)
    images, _ = _views(1)
    originals = torch.tensor(red).expand(2, 8, 8, 3).clone()
    loss = LUSDLoss(prior, "red", "a red head", max_redraws=3)
    z, zsrc = prior.encode_images(images.detach()), prior.encode_images(originals)
    out = loss(images, step=0, total_steps=5, originals=originals, generator=torch.Generator().manual_seed(0))
    assert out.info["redraws"] == 3.0 and out.info["delta_std"] == 0.0
    grad = loss.direction(z, zsrc, torch.zeros_like(z), 1.0)
    d = z - zsrc
    assert torch.allclose(grad, d / masked_std(d, None).reshape(-1, 1, 1, 1), atol=1e-5)


def test_step_size_schedule_falls_between_the_released_bounds():
    sizes = [direction_scale(p / 10, 0.15, 0.01, 1.0) for p in range(11)]
    assert all(a > b for a, b in zip(sizes, sizes[1:]))
    assert 0.01 < sizes[-1] < sizes[0] < 0.15


def test_needs_the_originals():
    with pytest.raises(ValueError, match="original"):
        LUSDLoss(ClosedFormPrior((1, 0, 0)), "red")(torch.rand(1, 8, 8, 3), step=0, total_steps=1)
