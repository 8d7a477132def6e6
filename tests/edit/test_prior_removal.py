"""Gaussian prior removal: reset or regrow the masked part, nothing else."""

import pytest
import torch

from engine.edit.prior_removal import PriorRemoval, remove_prior, remove_prior_rows
from engine.scene import rgb_to_sh0, sh0_to_rgb
from tests.edit.scenes import params_equal, two_part_scene


@pytest.fixture(scope="module")
def scene_and_mask():
    scene, part_ids, _ = two_part_scene(40)
    return scene, (part_ids == 0).float()


def test_reset_colour_opacity_and_scale(scene_and_mask):
    scene, mask = scene_and_mask
    out, out_mask = remove_prior(scene, mask, PriorRemoval(color=(0.2, 0.4, 0.6), keep_shading=False, opacity=0.3,
                                                           log_scale_shift=-1.0))
    head = mask > 0.5
    assert torch.allclose(out.base_colors()[head], torch.tensor([0.2, 0.4, 0.6]), atol=1e-6)
    assert bool((out.shN[head] == 0).all())
    assert torch.allclose(out.activated_opacities()[head], torch.tensor(0.3))
    assert torch.allclose(out.scales[head], scene.scales[head] - 1.0)
    assert torch.equal(out.means, scene.means) and torch.equal(out_mask, mask)
    assert params_equal(out.subset(~head), scene.subset(~head))


def test_reset_keeping_shading_forgets_the_colour_not_the_lighting(scene_and_mask):
    scene, mask = scene_and_mask
    head = mask > 0.5
    shaded = scene.clone()
    with torch.no_grad():  # a blue part with varied brightness and a view-dependent tint
        brightness = torch.linspace(0.4, 1.0, int(head.sum()), dtype=scene.dtype)
        shaded.sh0[head] = rgb_to_sh0(brightness[:, None] * torch.tensor([0.1, 0.2, 0.8]))[:, None, :]
        shaded.shN[head] = torch.randn(shaded.shN[head].shape, generator=torch.Generator().manual_seed(1))
    out, _ = remove_prior(shaded, mask, PriorRemoval())
    rgb = sh0_to_rgb(out.sh0[head, 0])
    assert torch.allclose(rgb, rgb[:, :1].expand_as(rgb), atol=1e-6)  # grey: the hue is gone
    luma = rgb[:, 0]
    assert abs(float(luma.mean()) - 0.5) < 1e-4  # the part's mean is the neutral colour
    assert torch.allclose(luma / luma[0], brightness / brightness[0], atol=1e-4)  # relative shading kept
    bands = out.shN[head]
    assert torch.allclose(bands, bands[..., :1].expand_as(bands))  # the view-dependent tint is gone...
    assert torch.allclose(bands[..., 0], shaded.shN[head].mean(dim=-1), atol=1e-6)  # ...its brightness kept
    assert params_equal(out.subset(~head), shaded.subset(~head))


def test_regrow_replaces_the_part_with_a_few_small_seeds(scene_and_mask):
    scene, mask = scene_and_mask
    head = mask > 0.5
    out, out_mask = remove_prior(scene, mask, PriorRemoval(regrow=True, regrow_count=7),
                                 generator=torch.Generator().manual_seed(0))
    assert len(out) == int((~head).sum()) + 7 and out_mask.shape == (len(out),)
    assert params_equal(out.subset(torch.arange(int((~head).sum()))), scene.subset(~head))
    assert bool((out_mask[-7:] == 1).all()) and bool((out_mask[:-7] == 0).all())
    seeds = out.subset(torch.arange(len(out) - 7, len(out)))
    assert float(torch.exp(seeds.scales).max()) < float(torch.exp(scene.scales[head]).median())
    centre = scene.means[head].mean(0)
    assert float((seeds.means - centre).norm(dim=-1).max()) < 0.4  # inside the head (radius 0.2) plus jitter


def test_the_row_map_names_each_output_rows_input_row(scene_and_mask):
    scene, mask = scene_and_mask
    head = mask > 0.5
    out, out_mask, rows = remove_prior_rows(scene, mask, PriorRemoval(regrow=True, regrow_count=7),
                                            generator=torch.Generator().manual_seed(0))
    assert rows.dtype == torch.int64 and rows.shape == (len(out),)
    assert bool((rows[-7:] == -1).all()) and not bool(head[rows[:-7]].any())  # seeds new, masked rows gone
    assert params_equal(out.subset(torch.arange(len(out) - 7)), scene.subset(rows[:-7]))
    _, _, rows = remove_prior_rows(scene, mask, PriorRemoval(opacity=0.3))
    assert torch.equal(rows, torch.arange(len(scene)))  # a reset keeps every row in place


def test_bad_options_are_refused(scene_and_mask):
    scene, mask = scene_and_mask
    with pytest.raises(ValueError, match="opacity must be in"):
        remove_prior(scene, mask, PriorRemoval(opacity=1.5))
    with pytest.raises(ValueError, match="color must be three values"):
        remove_prior(scene, mask, PriorRemoval(color=(2.0, 0.0, 0.0)))


def test_default_is_on_for_romap_only():
    assert PriorRemoval().active("romap") and not PriorRemoval().active("sds") and not PriorRemoval().active("dds")
    assert PriorRemoval(enabled=True).active("dds") and not PriorRemoval(enabled=False).active("romap")
