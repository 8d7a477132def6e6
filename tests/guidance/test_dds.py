import pytest
import torch

from engine.guidance import DDSLoss


def test_equal_prompts_and_identical_images_give_exactly_zero_gradient(red_prior, half_mask):
    originals = torch.rand(2, 8, 8, 3)
    images = originals.clone().requires_grad_(True)
    loss = DDSLoss(red_prior, "a chair", "a chair")
    out = loss(images, step=0, total_steps=1, mask2d=half_mask, originals=originals,
               generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert images.grad.abs().max() == 0
    assert out.info["grad_norm"] == 0


def test_dds_noise_cancels_and_pulls_toward_the_target(red_prior):
    """Under the closed-form prior the source is centred on the original: the gradient is deterministic."""
    latents = torch.rand(2, 3, 8, 8) * 2 - 1
    t = torch.tensor([300, 600])
    loss = DDSLoss(red_prior, "a red chair", "a chair")
    g1 = loss.gradient(latents, latents, t, torch.randn(2, 3, 8, 8))
    g2 = loss.gradient(latents, latents, t, torch.randn(2, 3, 8, 8))
    torch.testing.assert_close(g1, g2)
    mean = torch.tensor([0.8, 0.1, 0.1]).reshape(1, 3, 1, 1) * 2 - 1
    assert (g1 * (latents - mean)).sum() > 0  # descending the gradient reduces the distance to the target


def test_dds_moves_the_masked_part_to_the_colour_and_leaves_the_rest(red_prior, half_mask):
    target = torch.tensor([0.8, 0.1, 0.1])
    originals = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(1))
    image = originals.clone().requires_grad_(True)
    loss = DDSLoss(red_prior, "a red chair", "a chair")
    optimizer = torch.optim.SGD([image], lr=0.5)
    g = torch.Generator().manual_seed(0)
    inside = half_mask[..., 0] > 0
    start = (originals[inside] - target).norm()
    for step in range(60):
        optimizer.zero_grad()
        loss(image, step=step, total_steps=60, mask2d=half_mask, originals=originals, generator=g).loss.backward()
        optimizer.step()
    assert (image.detach()[inside] - target).norm() < 0.2 * start
    assert torch.equal(image.detach()[~inside], originals[~inside])


def test_dds_needs_a_source_prompt_and_originals(red_prior):
    with pytest.raises(ValueError, match="source prompt"):
        DDSLoss(red_prior, "a red chair", "")
    with pytest.raises(ValueError, match="originals"):
        DDSLoss(red_prior, "a red chair", "a chair")(torch.rand(1, 8, 8, 3), step=0, total_steps=1)
    with pytest.raises(ValueError, match="must match"):
        DDSLoss(red_prior, "a red chair", "a chair")(
            torch.rand(1, 8, 8, 3), step=0, total_steps=1, originals=torch.rand(2, 8, 8, 3))
