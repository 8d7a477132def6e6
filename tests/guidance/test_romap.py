import pytest
import torch

from engine.guidance import RoMaPLoss, SDSLoss, SLaMPConfig


def test_loss_is_masked_sds_plus_weighted_l1_inside_the_mask(red_prior, half_mask):
    images = torch.rand(2, 8, 8, 3, requires_grad=True)
    anchors = torch.rand(2, 8, 8, 3)
    romap = RoMaPLoss(red_prior, "red", anchor_weight=2.5)
    out = romap(images, step=0, total_steps=1, mask2d=half_mask, anchors=anchors,
                generator=torch.Generator().manual_seed(0))
    out.loss.backward()

    reference = images.detach().clone().requires_grad_(True)
    sds = SDSLoss(red_prior, "red")(reference, step=0, total_steps=1, mask2d=half_mask,
                                    generator=torch.Generator().manual_seed(0))
    l1 = (half_mask * (reference - anchors).abs()).sum() / 2
    (sds.loss + 2.5 * l1).backward()
    torch.testing.assert_close(images.grad, reference.grad)
    torch.testing.assert_close(out.loss.detach(), (sds.loss + 2.5 * l1).detach())
    assert out.info["anchors_made"] == 0.0 and out.info["anchor"] == pytest.approx(float(l1.detach()))
    assert images.grad[:, :, 4:].abs().max() == 0


def test_anchors_are_made_from_originals_when_not_given(red_prior, half_mask):
    originals = torch.rand(2, 8, 8, 3)
    romap = RoMaPLoss(red_prior, "red", slamp=SLaMPConfig(num_steps=5))
    anchors = romap.make_anchors(originals, half_mask, generator=torch.Generator().manual_seed(1))
    assert anchors.shape == originals.shape and not anchors.requires_grad
    images = originals.clone().requires_grad_(True)
    out = romap(images, step=0, total_steps=1, mask2d=half_mask, originals=originals,
                generator=torch.Generator().manual_seed(0))
    assert out.info["anchors_made"] == 1.0 and out.info["anchor"] > 0
    with pytest.raises(ValueError, match="anchors"):
        romap(images, step=0, total_steps=1, mask2d=half_mask)


def test_romap_moves_the_masked_part_to_the_target(red_prior, half_mask):
    target = torch.tensor([0.8, 0.1, 0.1])
    originals = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(2))
    image = originals.clone().requires_grad_(True)
    romap = RoMaPLoss(red_prior, "a red chair", anchor_weight=0.05, slamp=SLaMPConfig(num_steps=8))
    g = torch.Generator().manual_seed(0)
    anchors = romap.make_anchors(originals, half_mask, generator=g)
    optimizer = torch.optim.SGD([image], lr=0.5)
    inside = half_mask[..., 0] > 0
    start = (originals[inside] - target).norm()
    for step in range(40):
        optimizer.zero_grad()
        romap(image, step=step, total_steps=40, mask2d=half_mask, anchors=anchors, generator=g).loss.backward()
        optimizer.step()
    assert (image.detach()[inside] - target).norm() < 0.2 * start
    assert torch.equal(image.detach()[~inside], originals[~inside])


def test_bad_settings_are_refused(red_prior):
    with pytest.raises(ValueError, match="anchor_weight"):
        RoMaPLoss(red_prior, "red", anchor_weight=-1.0)
    with pytest.raises(ValueError, match="must match"):
        RoMaPLoss(red_prior, "red")(torch.rand(1, 8, 8, 3), step=0, total_steps=1, anchors=torch.rand(2, 8, 8, 3))
