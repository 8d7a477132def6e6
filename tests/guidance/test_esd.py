"""ESD with its closed-form view score: lambda = 1 (or one view) is SDS; the entropy term pushes views apart."""

from __future__ import annotations

import pytest
import torch

from engine.guidance import ClosedFormPrior
from engine.guidance.esd import ESDLoss
from engine.guidance.sds import SDSLoss, sds_weight

PRIOR = ClosedFormPrior((0.8, 0.1, 0.1))


def _inputs(seed: int, batch: int = 2):
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(batch, 3, 8, 8, generator=g) * 2 - 1
    return z, torch.full((batch,), 400), torch.randn(batch, 3, 8, 8, generator=g)


def test_view_weight_one_is_exactly_sds():
    z, t, noise = _inputs(0)
    esd = ESDLoss(PRIOR, "red", guidance_scale=100.0, view_weight=1.0)
    mean, var = esd.observe(z)
    assert torch.allclose(esd.gradient(z, t, noise, mean, var), SDSLoss(PRIOR, "red").gradient(z, t, noise), atol=1e-6)


def test_a_single_first_view_is_sds_whatever_lambda():
    """The views' Gaussian is then a point mass at the view: its epsilon is the true noise."""
    z, t, noise = _inputs(1, batch=1)
    esd = ESDLoss(PRIOR, "red", view_weight=0.3)
    mean, var = esd.observe(z)
    assert torch.allclose(esd.gradient(z, t, noise, mean, var), SDSLoss(PRIOR, "red").gradient(z, t, noise), atol=1e-5)


def test_entropy_term_is_the_hand_derived_push_away_from_the_views_mean():
    """At zero noise, ESD - SDS = -(1 - lambda) w sqrt(a (1 - a)) (z - mu) / (a sigma^2 + 1 - a)."""
    z, t, _ = _inputs(2)
    zero = torch.zeros_like(z)
    esd = ESDLoss(PRIOR, "red", view_weight=0.25)
    mean, var = esd.observe(z)
    assert torch.allclose(mean, z.mean(0, keepdim=True)) and torch.allclose(var, z.var(0, unbiased=False,
                                                                                      keepdim=True), atol=1e-6)
    a = float(PRIOR.alphas_cumprod[400])
    w = float(sds_weight(PRIOR.alphas_cumprod, t)[0])
    expected = -(0.75) * w * (a * (1 - a)) ** 0.5 * (z - mean) / (a * var + 1 - a)
    extra = esd.gradient(z, t, zero, mean, var) - SDSLoss(PRIOR, "red").gradient(z, t, zero)
    assert torch.allclose(extra, expected, atol=1e-5)
    assert float((extra * (z - mean)).sum()) < 0  # descent moves each view along +(z - mu): apart


def test_running_statistics_follow_the_views_and_reset_on_a_new_size():
    esd = ESDLoss(PRIOR, "red", momentum=0.5)
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    esd.observe(a)
    mean, var = esd.observe(b)
    assert torch.allclose(mean, torch.full_like(mean, 0.5)) and torch.allclose(var, torch.full_like(var, 0.25))
    mean, var = esd.observe(torch.ones(1, 3, 8, 8))
    assert mean.shape == (1, 3, 8, 8) and float(var.abs().max()) == 0.0


@pytest.mark.parametrize("kwargs", [{"view_weight": 1.5}, {"momentum": 1.0}, {"prompt": " "}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ESDLoss(PRIOR, **{"prompt": "red", **kwargs})
