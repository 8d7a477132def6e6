"""Interval score matching: DDIM steps, the closed-form gradient direction, masks, and bad settings."""

from __future__ import annotations

import pytest
import torch

from engine.guidance.ism import ISMLoss, ddim_step
from engine.guidance import ClosedFormPrior, SDSLoss
from engine.guidance.timesteps import TimestepSchedule


def test_ddim_step_is_invertible_and_identity_at_equal_times():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    a, b = torch.tensor([0.9, 0.5]), torch.tensor([0.3, 0.2])
    assert torch.allclose(ddim_step(x, eps, a, a), x, atol=1e-6)
    assert torch.allclose(ddim_step(ddim_step(x, eps, a, b), eps, b, a), x, atol=1e-5)


@pytest.mark.parametrize("t", [1, 60, 300, 700, 990])
def test_closed_form_ism_gradient_points_from_the_target_to_the_image(t):
    """Under the exact Gaussian denoiser ISM's gradient is a positive multiple of (z - mu): no noise term."""
    g = torch.Generator().manual_seed(t)
    target = torch.rand(2, 8, 8, 3, generator=g)
    prior = ClosedFormPrior(target)
    images = torch.rand(2, 8, 8, 3, generator=g)
    loss = ISMLoss(prior, "anything")
    z, mu = prior.encode_images(images), prior.encode_images(target)
    grad, s = loss.gradient(z, torch.tensor([t, t]))
    d = z - mu
    c = float((grad * d).sum() / (d * d).sum())  # least-squares fit grad ~ c (z - mu)
    assert c > 0
    assert float((grad - c * d).norm()) < 0.05 * float(grad.norm())  # one direction, no noise
    assert s.tolist() == [max(t - 50, 0)] * 2
    again, _ = loss.gradient(z, torch.tensor([t, t]))
    assert torch.equal(grad, again)  # deterministic


def test_ism_moves_images_to_the_closed_form_target_with_less_spread_than_sds():
    """A few Adam steps on raw images: ISM and SDS both reach the target colour; ISM's updates vary less."""
    red = (0.8, 0.1, 0.1)
    prior = ClosedFormPrior(red)

    def run(loss):
        images = torch.full((1, 8, 8, 3), 0.5, requires_grad=True)
        opt = torch.optim.Adam([images], lr=0.02)
        g = torch.Generator().manual_seed(0)
        grads = []
        for step in range(60):
            out = loss(images, step=step, total_steps=60, generator=g)
            opt.zero_grad()
            out.loss.backward()
            grads.append(images.grad.flatten().clone())
            opt.step()
        cos = torch.nn.functional.cosine_similarity(torch.stack(grads[:-1]), torch.stack(grads[1:]), dim=-1)
        return (images.detach().mean((0, 1, 2)) - torch.tensor(red)).norm(), float(cos.mean())

    ism_err, ism_cos = run(ISMLoss(prior, "red"))
    sds_err, sds_cos = run(SDSLoss(prior, "red"))
    assert ism_err < 0.1 and sds_err < 0.1
    assert ism_cos > 0.99 and ism_cos > sds_cos  # consecutive ISM gradients agree: no random-noise term


def test_mask_stops_the_gradient_outside():
    prior = ClosedFormPrior((0.0, 1.0, 0.0))
    images = torch.rand(2, 8, 8, 3, requires_grad=True)
    mask = torch.zeros(2, 8, 8, 1)
    mask[:, :, :4] = 1.0
    out = ISMLoss(prior, "green")(images, step=0, total_steps=10, mask2d=mask,
                                  generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert float(images.grad[:, :, 4:].abs().max()) == 0.0
    assert float(images.grad[:, :, :4].abs().max()) > 0.0
    assert {"loss", "ism", "t", "grad_norm"} <= set(out.info)


def test_timesteps_come_from_the_schedule():
    prior = ClosedFormPrior((0.5, 0.5, 0.5))
    loss = ISMLoss(prior, "grey", timesteps=TimestepSchedule(t_min=0.4, t_max=0.4))
    out = loss(torch.rand(1, 4, 4, 3), step=0, total_steps=1, generator=torch.Generator().manual_seed(0))
    assert out.info["t"] == pytest.approx(0.4)


@pytest.mark.parametrize("kwargs", [{"prompt": "  "}, {"interval": 0.0}, {"interval": 1.5}, {"inversion_step": 0.0}])
def test_bad_settings_are_refused(kwargs):
    args = {"prompt": "x", **kwargs}
    with pytest.raises(ValueError):
        ISMLoss(ClosedFormPrior((0.5, 0.5, 0.5)), **args)


def test_interval_equals_a_two_step_ddim_inversion_done_by_hand():
    """t = 300, interval 50, inversion step 200: z -> 200 -> 250 with the unconditional model, one more
    unconditional step to 300, then the guided prediction there; every DDIM step written out here."""
    from .two_prompt_prior import TwoPromptPrior

    prior = TwoPromptPrior(target=(0.8, 0.1, 0.1))  # its empty prompt differs: the inversion must use it
    abar = prior.alphas_cumprod
    z = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def step(x, eps, a_from, a_to):
        x0 = (x - (1 - a_from) ** 0.5 * eps) / a_from**0.5
        return a_to**0.5 * x0 + (1 - a_to) ** 0.5 * eps

    def eps_u(x, t):
        return prior.epsilon(x, torch.tensor([t]), "")

    x200 = step(z, eps_u(z, 0), abar[0], abar[200])
    x250 = step(x200, eps_u(x200, 200), abar[200], abar[250])
    e250 = eps_u(x250, 250)
    x300 = step(x250, e250, abar[250], abar[300])
    guided = eps_u(x300, 300) + 7.5 * (prior.epsilon(x300, torch.tensor([300]), "red") - eps_u(x300, 300))
    expected = ((1 - abar[300]) / abar[300]) ** 0.5 * (guided - e250)
    grad, s = ISMLoss(prior, "red").gradient(z, torch.tensor([300]))
    assert s.tolist() == [250]
    assert torch.allclose(grad, expected, atol=1e-5)
