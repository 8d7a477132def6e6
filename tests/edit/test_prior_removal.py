"""Gaussian prior removal: reset or regrow the masked part, nothing else."""

import pytest
import torch

from engine.edit.prior_removal import PriorRemoval, remove_prior, remove_prior_rows
from tests.edit.scenes import params_equal, two_part_scene


@pytest.fixture(scope="module")
def scene_and_mask():
    scene, part_ids, _ = two_part_scene(40)
    return scene, (part_ids == 0).float()


def test_reset_colour_opacity_and_scale(scene_and_mask):
    scene, mask = scene_and_mask
    out, out_mask = remove_prior(scene, mask, PriorRemoval(color=(0.2, 0.4, 0.6), keep_view_dependent=False, opacity=0.3,
                                                           log_scale_shift=-1.0))
    head = mask > 0.5
    assert torch.allclose(out.base_colors()[head], torch.tensor([0.2, 0.4, 0.6]), atol=1e-6)
    assert bool((out.shN[head] == 0).all())
    assert torch.allclose(out.activated_opacities()[head], torch.tensor(0.3))
    assert torch.allclose(out.scales[head], scene.scales[head] - 1.0)
    assert torch.equal(out.means, scene.means) and torch.equal(out_mask, mask)
    assert params_equal(out.subset(~head), scene.subset(~head))


def test_reset_forgets_the_base_colour_and_keeps_the_view_dependent_lighting(scene_and_mask):
    scene, mask = scene_and_mask
    head = mask > 0.5
    lit = scene.clone()
    with torch.no_grad():  # a capture's lighting lives in its higher SH bands
        lit.shN[head] = torch.randn(lit.shN[head].shape, generator=torch.Generator().manual_seed(1))
    out, _ = remove_prior(lit, mask, PriorRemoval())
    assert torch.allclose(out.base_colors()[head], torch.tensor(0.5), atol=1e-6)
    assert torch.equal(out.shN, lit.shN)
    assert params_equal(out.subset(~head), lit.subset(~head))


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
