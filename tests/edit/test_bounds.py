"""The edit stays in its part, whatever the loss wants, and is measured against ground truth.

- an adversarial loss that rewards spreading and growing cannot take a trainable centre out of the region,
  nor a scale past its cap: zero floaters;
- a loss that only cares about pixels outside the region moves nothing (the image gradient is masked);
- appearance edits keep geometry bit-identical;
- ground truth (assets/build_edit_cases.py, cut down to the antenna's neighbourhood for speed): the demo
  `closed-form:<colour>` is a clean recolour and `reference:` removal reaches its target on held-out views.
"""

import math

import pytest
import torch

from assets.build_edit_cases import edit_cases
from engine.edit import EditConfig, ViewPicker, edit_prior, part_orbit, plan_region, run_edit
from engine.evaluate import edit_quality, held_out_cameras
from engine.guidance.base import LossOutput
from engine.guidance.closed_form import ClosedFormPrior
from engine.guidance.reference import ReferencePrior, recolour_part
from engine.optimize import DensifyConfig
from engine.render.images import rgb_renderer
from tests.edit.scenes import params_equal, two_part_scene

BLUE = (0.15, 0.3, 0.9)


@pytest.fixture(scope="module")
def scene_and_mask():
    scene, part_ids, _ = two_part_scene(150)
    return scene, (part_ids == 0).float()


def _outside_unchanged(before, mask_before, result) -> bool:
    return params_equal(before.subset(mask_before <= 0.5), result.scene.subset(result.mask <= 0.5))


class _Spread:
    """A loss that wants dark pixels everywhere: Gaussians are rewarded for growing and moving outward."""

    def __call__(self, images, **kw):
        return LossOutput(images.mean() * 100.0, {})


def test_an_edit_that_wants_to_spread_stays_in_its_region(scene_and_mask):
    scene, mask = scene_and_mask
    config = EditConfig(prompt="spread", steps=60, resolution=32, preview_every=0, edit="shape", region_margin=0.2,
                        lr=type(EditConfig().lr)(means=0.02, scales=0.05),
                        densify=DensifyConfig(start_step=10, interval=10, grad_threshold=0.0, grow_fraction=0.3))
    result = run_edit(scene, mask, config, ClosedFormPrior(BLUE), loss_fn=_Spread())
    region, _ = plan_region(scene, mask, config)
    edited = result.mask > 0.5
    assert _outside_unchanged(scene, mask, result)
    assert bool(region.contains(result.scene.means[edited]).all()), "a trainable centre left the region"
    moved = torch.cdist(result.scene.means[edited], scene.means[mask > 0.5]).min(dim=1).values
    assert float(moved.max()) > 0.01  # the adversary did move them (inside the region)
    cap = math.log(config.max_scale_growth * float(torch.quantile(torch.exp(scene.scales[mask > 0.5]).amax(-1), 0.98)))
    assert float(result.scene.scales[edited].max()) <= cap + 1e-5
    assert result.num_split + result.num_cloned > 0


class _OutsideOnly:
    """A loss on the pixels outside the region's silhouette only: it must not move anything."""

    def __call__(self, images, *, mask2d, **kw):
        return LossOutput(((mask2d == 0).to(images.dtype) * images).sum(), {})


def test_pixels_outside_the_region_push_nothing(scene_and_mask):
    scene, mask = scene_and_mask
    config = EditConfig(prompt="x", steps=5, resolution=32, preview_every=0, edit="shape",
                        densify=DensifyConfig(enabled=False))
    result = run_edit(scene, mask, config, ClosedFormPrior(BLUE), loss_fn=_OutsideOnly())
    assert params_equal(result.scene, scene)


def test_appearance_edit_keeps_geometry_bit_identical(scene_and_mask):
    scene, mask = scene_and_mask
    config = EditConfig(prompt="x", steps=20, resolution=32, preview_every=0, edit="appearance")
    result = run_edit(scene, mask, config, ClosedFormPrior(BLUE))
    assert len(result.scene) == len(scene)
    for name in ("means", "scales", "quats", "opacities"):
        assert torch.equal(getattr(result.scene, name), getattr(scene, name)), name
    assert not torch.equal(result.scene.sh0, scene.sh0)


def test_colour_demo_means_the_part_recoloured(scene_and_mask):
    """closed-form:<colour> becomes a reference prior on the part recoloured, nothing else changed."""
    scene, mask = scene_and_mask
    model = edit_prior(ClosedFormPrior(BLUE), scene, mask > 0.5, EditConfig(prompt="x"))
    assert isinstance(model, ReferencePrior)
    ideal = model.reference
    assert params_equal(ideal.subset(mask <= 0.5), scene.subset(mask <= 0.5))
    assert torch.equal(ideal.means, scene.means)
    head = ideal.base_colors()[mask > 0.5]
    assert float((head.mean(0) - torch.tensor(BLUE)).abs().max()) < 0.1


@pytest.fixture(scope="module")
def antenna_cases():
    return {c.name: c for c in edit_cases(("reshape_antenna", "remove_antenna"), crop=2.0)}


def _quality(case, result, config):
    region, orbit = plan_region(case.scene, case.mask, config)
    cameras = held_out_cameras(orbit.center, orbit.radius * 1.3, resolution=64)
    return edit_quality(case.scene, case.mask > 0.5, result.scene, result.mask > 0.5, case.target, case.changed,
                        region, cameras)


def test_recolour_demo_reaches_the_ideal_on_held_out_views(antenna_cases):
    case = antenna_cases["remove_antenna"]  # its input scene: the antenna and its surroundings
    selected = case.mask > 0.5
    config = EditConfig(prompt="a blue antenna", steps=250, resolution=64, preview_every=0)
    result = run_edit(case.scene, case.mask, config, ClosedFormPrior(BLUE))
    ideal = recolour_part(case.scene, selected, BLUE)
    q = _quality(type(case)("recolour", "recolour", "", "", case.scene, case.mask, ideal, changed=selected),
                 result, config)
    assert _outside_unchanged(case.scene, case.mask, result)
    assert result.shape_from_step is None and len(result.scene) == len(case.scene)  # the demo is a recolour
    for name in ("means", "scales", "quats", "opacities"):
        assert torch.equal(getattr(result.scene, name), getattr(case.scene, name)), name
    assert q.psnr_inside >= 25.0, q
    assert q.spill_vs_target <= 0.005 and q.floaters == 0, q


@pytest.mark.slow  # ~9 s: run with `pytest -m slow`
def test_removal_reaches_its_target_on_held_out_views(antenna_cases):
    case = antenna_cases["remove_antenna"]
    config = EditConfig(prompt=case.prompt, steps=200, resolution=64, preview_every=0)
    before = _quality(case, type("R", (), {"scene": case.scene, "mask": case.mask})(), config)
    result = run_edit(case.scene, case.mask, config, ReferencePrior(case.target, render_fn=rgb_renderer()))
    q = _quality(case, result, config)
    assert _outside_unchanged(case.scene, case.mask, result)
    # auto's 50-step colour-only probe measured that colour cannot remove it: the edit ran again with geometry
    assert result.shape_from_step == 20 and result.steps_done == 250, result.shape_push_ratio
    assert q.psnr_inside >= before.psnr_inside + 8.0, (before, q)
    assert q.spill_vs_target <= 0.005 and q.floaters == 0, q


def test_sampled_views_see_the_part():
    """On the robot's eyes (small, facing one way), every sampled view sees at least the chosen fraction."""
    from assets.default_scene import load_default_scene

    scene, part_ids, names = load_default_scene()
    eyes = torch.as_tensor(part_ids) == names.index("eyes")
    config = EditConfig(prompt="x", resolution=64)
    orbit = part_orbit(scene, eyes.float(), config)
    picker = ViewPicker(orbit, scene, eyes, 0.25, "auto")
    generator = torch.Generator().manual_seed(0)
    plain = picker.visible_fraction(orbit.sample(24, generator))
    assert float((plain < 0.25).float().mean()) > 0.2  # without the picker many views miss the eyes
    picked = picker.visible_fraction(picker.sample(24, generator))
    assert float(picked.min()) >= 0.25, picked
