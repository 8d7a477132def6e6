"""Weight-free edit metrics: they see a part recolour inside the part, spill when outside Gaussians change,
and the distance to a known ground-truth edit."""

from __future__ import annotations

import math

import pytest
import torch

from engine.batch.metrics import PSNR_CAP, EvalOptions, edit_metrics, frozen_rows_changed, weighted_psnr
from engine.edit import EditConfig
from engine.scene import rgb_to_sh0
from tests.edit.scenes import two_part_scene

OPTIONS = EvalOptions(views=3, resolution=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recolour(scene, rows, rgb):
    """A copy of `scene` with the `rows` Gaussians' base colour set to `rgb`."""
    out = scene.detach().clone()
    out.sh0[rows] = rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))
    return out


def test_weighted_psnr_formula():
    a = torch.zeros(1, 2, 2, 3)
    b = a.clone()
    b[0, 0, 0] = 0.1  # one pixel off by 0.1 in every channel
    everywhere = torch.ones(1, 2, 2, 1)
    assert weighted_psnr(a, b, everywhere) == pytest.approx(10 * math.log10(1 / (0.01 / 4)))
    only_that_pixel = torch.zeros(1, 2, 2, 1)
    only_that_pixel[0, 0, 0] = 1
    assert weighted_psnr(a, b, only_that_pixel) == pytest.approx(20.0)
    assert weighted_psnr(a, a, everywhere) == PSNR_CAP
    assert weighted_psnr(a, b, torch.zeros(1, 2, 2, 1)) is None


def test_unchanged_scene_scores_identical():
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    metrics, images = edit_metrics(scene, mask, scene, mask, EditConfig(), OPTIONS)
    assert metrics["psnr_inside"] == PSNR_CAP and metrics["psnr_outside"] == PSNR_CAP
    assert metrics["spill"] == 0 and metrics["frozen_changed"] == 0
    assert metrics["gaussians_in"] == metrics["gaussians_out"] == 80 and metrics["masked_in"] == 40
    assert images["before"].shape == (3, 32, 32, 3) and images["region"].shape == (3, 32, 32, 1)


def test_part_recolour_changes_the_inside_not_the_outside():
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    edited = _recolour(scene, part_ids == 0, (0.9, 0.1, 0.1))
    metrics, _ = edit_metrics(scene, mask, edited, mask, EditConfig(), OPTIONS)
    assert metrics["frozen_changed"] == 0
    assert metrics["psnr_inside"] < 20  # blue -> red is a big change where the head is
    assert metrics["psnr_outside"] > metrics["psnr_inside"] + 10
    assert metrics["spill"] < 0.05


def test_changing_gaussians_outside_the_mask_is_caught():
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    edited = _recolour(scene, part_ids == 1, (0.9, 0.1, 0.1))  # the body, which the mask excludes
    metrics, _ = edit_metrics(scene, mask, edited, mask, EditConfig(), OPTIONS)
    assert metrics["frozen_changed"] == 40
    assert metrics["spill"] > 0.05
    assert metrics["psnr_outside"] < 25


def test_frozen_rows_matched_through_densification():
    scene, part_ids, _ = two_part_scene(10)
    mask = (part_ids == 0).float()
    grown = type(scene).concat([scene, scene.subset(part_ids == 0)])  # masked rows appended, as densify does
    grown_mask = torch.cat([mask, torch.ones(10)])
    assert frozen_rows_changed(scene, mask, grown, grown_mask, 0.5) == 0
    assert frozen_rows_changed(scene, mask, grown, torch.zeros(30), 0.5) is None  # counts differ


def test_psnr_against_a_target_rises_toward_it():
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    target = _recolour(scene, part_ids == 0, (0.9, 0.1, 0.1))
    halfway = _recolour(scene, part_ids == 0, (0.5, 0.2, 0.5))
    metrics, _ = edit_metrics(scene, mask, halfway, mask, EditConfig(), OPTIONS, target=target)
    assert metrics["psnr_target_input"] < metrics["psnr_target"] < PSNR_CAP
    done, _ = edit_metrics(scene, mask, target, mask, EditConfig(), OPTIONS, target=target)
    assert done["psnr_target"] == PSNR_CAP


def test_options_checked():
    with pytest.raises(ValueError, match="views"):
        EvalOptions(views=0).check()
    with pytest.raises(ValueError, match="resolution"):
        EvalOptions(resolution=8).check()
