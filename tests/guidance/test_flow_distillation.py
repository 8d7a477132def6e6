"""Rectified-flow distillation: RFDS's velocity residual against a closed-form flow (Gaussian data, exact
velocity), its relation to the epsilon form, and SDS / DDS / RoMaP end to end on the tiny SD3-layout pipeline
(native size at the VAE, finite masked gradients, DDS exactly zero when nothing differs)."""

from __future__ import annotations

import pytest
import torch

from engine.guidance import DDSLoss, RoMaPLoss, SDSLoss, SLaMPConfig, TimestepSchedule
from engine.guidance.sds import add_noise, sds_weight

MU, SIGMA_DATA = 0.7, 0.5


def exact_velocity(model, mu: torch.Tensor):
    """The exact velocity of data x0 ~ N(mu, SIGMA_DATA^2 I) under x_s = (1-s) x0 + s eps:
    v = E[eps | x_s] - E[x0 | x_s] = ((s - (1-s) sd^2) (x_s - (1-s) mu)) / ((1-s)^2 sd^2 + s^2) - mu."""

    def velocity(x, t, embeddings, pooled):
        s = model.sigmas[t].reshape(-1, 1, 1, 1)
        d = (1 - s) ** 2 * SIGMA_DATA**2 + s**2
        return (s - (1 - s) * SIGMA_DATA**2) * (x - (1 - s) * mu) / d - mu

    return velocity


def test_rfds_moves_latents_to_the_closed_form_flow_target(tiny_flow_model, monkeypatch):
    """E_eps[v_hat - (eps - z)] = s / ((1-s)^2 sd^2 + s^2) (z - mu): descending it reaches the data mean."""
    model = tiny_flow_model
    mu = torch.full((1, 16, 4, 4), MU)
    monkeypatch.setattr(model, "velocity", exact_velocity(model, mu))
    loss = SDSLoss(model, "a red chair", guidance_scale=7.5, timesteps=TimestepSchedule(0.3, 0.98))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 16, 4, 4, generator=g) * 2 - 1
    start = (z - mu).norm()
    for step in range(150):
        t = loss.timesteps.sample(2, step=step, total_steps=150, num_train_timesteps=1000, generator=g)
        z = z - 0.05 * loss.gradient(z, t, torch.randn(z.shape, generator=g))
    assert (z - mu).norm() < 0.1 * start
    # one step's residual, averaged over many noises, is the closed form above
    t = torch.tensor([500])
    s = model.sigmas[t]
    z0 = torch.zeros(1, 16, 4, 4)
    noise = torch.randn(4000, 16, 4, 4, generator=g)
    mean = loss.gradient(z0.expand(4000, -1, -1, -1), t.expand(4000), noise).mean(0)
    expected = s / ((1 - s) ** 2 * SIGMA_DATA**2 + s**2) * (z0[0] - mu[0])
    torch.testing.assert_close(mean, expected.expand_as(mean), atol=0.05, rtol=0.0)


def test_velocity_residual_is_the_epsilon_residual_over_one_minus_s(tiny_flow_model):
    """eps_hat - eps = (1 - s)(v_hat - v) on the real transformer: predict_noise and score_residual agree."""
    model = tiny_flow_model
    g = torch.Generator().manual_seed(2)
    z, noise = torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 16, 8, 8, generator=g)
    t = torch.tensor([350, 900])
    cond = model.condition("a red chair")
    flow = model.score_residual(z, noise, t, cond, guidance_scale=20.0)
    eps_hat = model.predict_noise(add_noise(z, noise, model.alphas_cumprod[t]), t, cond, guidance_scale=20.0)
    epsilon_form = sds_weight(model.alphas_cumprod, t).reshape(-1, 1, 1, 1) * (eps_hat - noise)
    w = ((1 - model.alphas_cumprod[t]) * (1 - model.sigmas[t])).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(epsilon_form, w * flow, rtol=1e-3, atol=1e-3)
    assert flow.abs().mean() > 0.1


@pytest.mark.parametrize("method", ["sds", "dds", "romap"])
def test_every_method_runs_on_the_flow_family_at_its_native_size(tiny_flow_model, monkeypatch, method):
    model = tiny_flow_model
    shapes: list[tuple[int, ...]] = []
    encode = model.vae.encode

    def spy(x, *args, **kwargs):
        shapes.append(tuple(x.shape))
        return encode(x, *args, **kwargs)

    monkeypatch.setattr(model.vae, "encode", spy)
    losses = {"sds": SDSLoss(model, "a red chair"), "dds": DDSLoss(model, "a red chair", "a chair"),
              "romap": RoMaPLoss(model, "a red chair", slamp=SLaMPConfig(num_steps=3))}
    originals = torch.rand(2, 40, 40, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 40, 40, 1)
    mask[:, 8:32, 8:32] = 1.0
    image = originals.clone().requires_grad_(True)
    out = losses[method](image, step=0, total_steps=2, mask2d=mask, originals=originals,
                         generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert shapes and all(s[-2:] == (16, 16) for s in shapes), shapes


def test_dds_is_exactly_zero_when_prompts_and_renders_agree(tiny_flow_model):
    originals = torch.rand(2, 16, 16, 3)
    image = originals.clone().requires_grad_(True)
    out = DDSLoss(tiny_flow_model, "a chair", "a chair")(image, step=0, total_steps=1, originals=originals)
    out.loss.backward()
    assert image.grad.abs().max() == 0
    differs = DDSLoss(tiny_flow_model, "a red chair", "a chair").gradient(
        torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8), torch.tensor([500]), torch.randn(1, 16, 8, 8))
    assert differs.abs().max() > 0
