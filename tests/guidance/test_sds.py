import pytest
import torch

from engine.guidance import SDSLoss, TimestepSchedule, classifier_free_guidance
from engine.guidance.base import epsilon_from_prediction
from engine.guidance.closed_form import closed_form_epsilon
from engine.guidance.sds import add_noise, latent_mask, sds_surrogate


def test_classifier_free_guidance_arithmetic():
    uncond, cond = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 1.0), cond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 0.0), uncond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 7.5), torch.tensor([16.0, 13.0]))


def test_v_and_x0_predictions_convert_to_the_true_noise():
    x0, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    a = torch.tensor([0.1, 0.5, 0.9])
    x_t = add_noise(x0, eps, a)
    v = a.sqrt().reshape(-1, 1, 1, 1) * eps - (1 - a).sqrt().reshape(-1, 1, 1, 1) * x0
    torch.testing.assert_close(epsilon_from_prediction(v, x_t, a, "v_prediction"), eps)
    torch.testing.assert_close(epsilon_from_prediction(x0, x_t, a, "sample"), eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(epsilon_from_prediction(eps, x_t, a, "epsilon"), eps)
    with pytest.raises(ValueError, match="prediction type"):
        epsilon_from_prediction(eps, x_t, a, "flow")


def test_surrogate_gradient_is_the_given_gradient_over_batch():
    latents = torch.randn(3, 4, 5, 5, requires_grad=True)
    grad = torch.randn(3, 4, 5, 5)
    sds_surrogate(latents, grad).backward()
    torch.testing.assert_close(latents.grad, grad / 3)


@pytest.mark.parametrize("masked", [False, True])
def test_sds_gradient_identity(red_prior, half_mask, masked):
    """autograd of the loss w.r.t. the latents == w(t) (eps_hat - eps) [* mask] / B, computed by hand."""
    loss = SDSLoss(red_prior, "a red chair", guidance_scale=100.0)
    latents = torch.rand(2, 3, 8, 8, requires_grad=True)
    t = torch.tensor([150, 700])
    noise = torch.randn(2, 3, 8, 8)
    mask = latent_mask(half_mask, (8, 8)) if masked else None
    sds_surrogate(latents, loss.gradient(latents, t, noise, mask=mask)).backward()

    a = red_prior.alphas_cumprod[t]
    mean = torch.tensor([0.8, 0.1, 0.1]).reshape(1, 3, 1, 1) * 2 - 1
    x_t = a.sqrt().reshape(-1, 1, 1, 1) * latents.detach() + (1 - a).sqrt().reshape(-1, 1, 1, 1) * noise
    eps_hat = closed_form_epsilon(x_t, a, mean, red_prior.data_std)
    expected = (1 - a).reshape(-1, 1, 1, 1) * (eps_hat - noise) / 2
    if masked:
        expected = expected * half_mask.permute(0, 3, 1, 2)
        assert latents.grad[..., 4:].abs().max() == 0
    torch.testing.assert_close(latents.grad, expected)


def test_loss_call_draws_t_then_noise_from_the_generator(red_prior, half_mask):
    loss = SDSLoss(red_prior, "red", timesteps=TimestepSchedule(0.1, 0.9))
    images = torch.rand(2, 8, 8, 3, requires_grad=True)
    out = loss(images, step=0, total_steps=10, mask2d=half_mask, generator=torch.Generator().manual_seed(3))
    out.loss.backward()
    g = torch.Generator().manual_seed(3)
    t = loss.timesteps.sample(2, step=0, total_steps=10, num_train_timesteps=1000, generator=g)
    noise = torch.randn(2, 3, 8, 8, generator=g)
    latents = images.detach().permute(0, 3, 1, 2) * 2 - 1
    expected = loss.gradient(latents, t, noise, mask=half_mask.permute(0, 3, 1, 2)) / 2 * 2  # / B, * d latent/d pixel
    torch.testing.assert_close(images.grad, expected.permute(0, 2, 3, 1))
    assert set(out.info) >= {"loss", "t", "grad_norm"}


def test_sds_with_the_closed_form_prior_moves_an_image_to_the_target(red_prior):
    target = torch.tensor([0.8, 0.1, 0.1])
    image = torch.full((2, 8, 8, 3), 0.5).requires_grad_(True)
    sds = SDSLoss(red_prior, "a red chair")
    optimizer = torch.optim.SGD([image], lr=0.5)
    g = torch.Generator().manual_seed(0)
    start = (image.detach() - target).norm()
    for step in range(60):
        optimizer.zero_grad()
        sds(image, step=step, total_steps=60, generator=g).loss.backward()
        optimizer.step()
    assert (image.detach() - target).norm() < 0.2 * start


def test_mask_keeps_pixels_outside_still(red_prior, half_mask):
    image = torch.rand(2, 8, 8, 3, requires_grad=True)
    SDSLoss(red_prior, "red")(image, step=0, total_steps=1, mask2d=half_mask).loss.backward()
    assert image.grad[:, :, 4:].abs().max() == 0
    assert image.grad[:, :, :4].abs().max() > 0


def test_latent_mask_area_averages():
    mask = torch.zeros(1, 4, 4, 1)
    mask[0, 0, 0] = 1.0
    small = latent_mask(mask, (2, 2))
    assert small.shape == (1, 1, 2, 2) and float(small[0, 0, 0, 0]) == 0.25 and float(small.sum()) == 0.25


def test_bad_inputs_are_refused(red_prior):
    with pytest.raises(ValueError, match="prompt is empty"):
        SDSLoss(red_prior, "  ")
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        SDSLoss(red_prior, "red")(torch.rand(2, 8, 8), step=0, total_steps=1)
