"""The batch's and `evaluate`'s numbers: they see a part recolour inside the part, spill vs the input when
outside Gaussians change, and the distance to a known ground-truth edit — on the one held-out ring."""

from __future__ import annotations

import pytest
import torch

from engine.edit import EditConfig, plan_region
from engine.evaluate import PSNR_CAP, EvalOptions, edit_metrics, held_out_cameras, part_cameras
from engine.scene import rgb_to_sh0
from tests.edit.scenes import two_part_scene

OPTIONS = EvalOptions(views=3, resolution=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recolour(scene, rows, rgb):
    """A copy of `scene` with the `rows` Gaussians' base colour set to `rgb`."""
    out = scene.detach().clone()
    out.sh0[rows] = rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))
    return out


def test_unchanged_scene_scores_identical():
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    metrics, images = edit_metrics(scene, mask, scene, mask, EditConfig(), OPTIONS)
    assert metrics["psnr_inside"] == PSNR_CAP and metrics["psnr_outside"] == PSNR_CAP
    assert metrics["spill_vs_input"] == 0 and metrics["frozen_changed"] == 0
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
    assert metrics["spill_vs_input"] < 0.05


def test_changing_gaussians_outside_the_mask_is_caught():
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    edited = _recolour(scene, part_ids == 1, (0.9, 0.1, 0.1))  # the body, which the mask excludes
    metrics, _ = edit_metrics(scene, mask, edited, mask, EditConfig(), OPTIONS)
    assert metrics["frozen_changed"] == 40
    assert metrics["spill_vs_input"] > 0.05
    assert metrics["psnr_outside"] < 25


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


def test_the_batch_measures_on_the_benchs_held_out_ring():
    """Pinned meaning: one evaluation ring. The batch and `evaluate` take their views from the same held-out
    ring as the ground-truth bench (bench/edit_quality.py: `held_out_cameras(orbit.center, orbit.radius * 1.3)`
    of the edit's own orbit), its first `views` views; before, they had a ring of their own at mid elevation."""
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    config = EditConfig()
    _, orbit = plan_region(scene, mask, config)
    bench = held_out_cameras(orbit.center, orbit.radius * 1.3, resolution=32)
    batch = part_cameras(scene, mask, config, views=5, resolution=32)
    assert len(bench) == 12 and len(batch) == 5
    for name in ("viewmats", "Ks"):
        torch.testing.assert_close(getattr(batch, name), getattr(bench, name)[:5])
