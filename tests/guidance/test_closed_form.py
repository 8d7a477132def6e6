import pytest
import torch

from engine.guidance import ClosedFormPrior
from engine.guidance.closed_form import closed_form_epsilon, closed_form_x0, sd_alphas_cumprod


def _direct_epsilon(x_t, a, mean, s):
    """eps_hat written exactly as in DESIGN.md."""
    x0 = closed_form_x0(x_t, a, mean, s)
    a = a.reshape(-1, 1, 1, 1)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def test_posterior_mean_is_the_mean_when_data_have_no_spread():
    x_t = torch.randn(3, 3, 4, 4)
    mean = torch.randn(1, 3, 4, 4)
    a = torch.tensor([0.1, 0.5, 0.99])
    torch.testing.assert_close(closed_form_x0(x_t, a, mean, 0.0), mean.expand(3, -1, -1, -1))


def test_posterior_mean_recovers_x0_without_noise():
    x0 = torch.randn(2, 3, 4, 4)
    a = torch.tensor([1.0 - 1e-7, 1.0 - 1e-7])
    x_t = a.reshape(-1, 1, 1, 1).sqrt() * x0
    torch.testing.assert_close(closed_form_x0(x_t, a, torch.zeros(1, 3, 1, 1), 0.5), x0, atol=1e-4, rtol=1e-4)


def test_posterior_mean_matches_a_monte_carlo_estimate():
    # x0 ~ N(mu, s^2), x_t = sqrt(a) x0 + sqrt(1-a) eps: regress x0 on x_t empirically.
    g = torch.Generator().manual_seed(0)
    mu, s, a = 0.3, 0.7, torch.tensor([0.4])
    x0 = mu + s * torch.randn(200_000, generator=g)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(200_000, generator=g)
    near = (x_t - 0.5).abs() < 0.02
    estimate = x0[near].mean()
    exact = closed_form_x0(torch.tensor([[0.5]]), a, torch.tensor(mu), s)
    assert abs(float(estimate) - float(exact)) < 0.02


def test_stable_epsilon_equals_the_design_formula():
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(4, 3, 5, 5, generator=g)
    mean = torch.rand(4, 3, 5, 5, generator=g) * 2 - 1
    a = torch.tensor([0.05, 0.3, 0.7, 0.95])
    for s in (0.0, 0.05, 0.5, 2.0):
        torch.testing.assert_close(closed_form_epsilon(x_t, a, mean, s), _direct_epsilon(x_t, a, mean, s))


def test_epsilon_is_exact_on_noised_target_when_spread_is_zero():
    mean = torch.full((1, 3, 4, 4), 0.6)
    noise = torch.randn(2, 3, 4, 4)
    a = torch.tensor([0.2, 0.9])
    x_t = a.reshape(-1, 1, 1, 1).sqrt() * mean + (1 - a.reshape(-1, 1, 1, 1)).sqrt() * noise
    torch.testing.assert_close(closed_form_epsilon(x_t, a, mean, 0.0), noise)


def test_prior_latents_are_pixels_in_minus_one_to_one(red_prior):
    images = torch.rand(2, 6, 4, 3)
    latents = red_prior.encode_images(images)
    assert latents.shape == (2, 3, 6, 4)
    assert latents.min() >= -1 and latents.max() <= 1
    torch.testing.assert_close(red_prior.decode_latents(latents), images)


def test_prior_ignores_guidance_scale_and_centres_source_on_original(red_prior):
    x_t = torch.randn(2, 3, 4, 4)
    t = torch.tensor([100, 800])
    cond = red_prior.condition("a red chair")
    eps_1 = red_prior.predict_noise(x_t, t, cond, guidance_scale=1.0)
    eps_100 = red_prior.predict_noise(x_t, t, cond, guidance_scale=100.0)
    torch.testing.assert_close(eps_1, eps_100)
    expected_mean = torch.tensor([0.8, 0.1, 0.1]).reshape(1, 3, 1, 1) * 2 - 1
    a = red_prior.alphas_cumprod[t]
    torch.testing.assert_close(eps_1, closed_form_epsilon(x_t, a, expected_mean, red_prior.data_std))
    original = torch.rand(2, 3, 4, 4)
    source = red_prior.condition("a chair", original=original)
    torch.testing.assert_close(
        red_prior.predict_noise(x_t, t, source, guidance_scale=7.5),
        closed_form_epsilon(x_t, a, original, red_prior.data_std),
    )


def test_per_view_targets_and_shape_errors():
    targets = torch.rand(2, 4, 4, 3)
    prior = ClosedFormPrior(targets)
    cond = prior.condition("x")
    torch.testing.assert_close(cond.mean, targets.permute(0, 3, 1, 2) * 2 - 1)
    with pytest.raises(ValueError, match="per-view"):
        prior.predict_noise(torch.randn(3, 3, 4, 4), torch.tensor([1, 2, 3]), cond)
    with pytest.raises(ValueError, match="colour"):
        ClosedFormPrior(torch.rand(4, 4))
    moved = prior.with_target((0.0, 1.0, 0.0))
    assert moved.name == "closed-form:#00ff00" and moved.data_std == prior.data_std


def test_sd_schedule_matches_diffusers():
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    torch.testing.assert_close(sd_alphas_cumprod(), reference.float())
