"""The edit job on CPU with the closed-form prior: it converges inside the mask and touches nothing else.

Convergence and "DDS with equal prompts changes nothing" run on the bundled default scene (the robot) with its
yellow antenna masked, cut down to the antenna and the Gaussians around it (~1.6k of ~34k, for speed), at
64x64, toward a constant blue. The other tests use tests/edit/scenes.py's two-part scene (a blue "head" on a
green "body", 150 Gaussians each, the head masked) toward red.
"""

import numpy as np
import pytest
import torch

from engine.optimize import Progress
from engine.edit import EditConfig, PriorRemoval, check_edit_inputs, part_orbit, plan_region, run_edit
from engine.guidance.closed_form import ClosedFormPrior
from engine.optimize import DensifyConfig
from tests.edit.scenes import default_scene_part, masked_colour_error, params_equal, two_part_scene

TARGET = (0.85, 0.1, 0.1)
BLUE = (0.1, 0.2, 0.9)


@pytest.fixture(scope="module")
def scene_and_mask():
    scene, part_ids, _ = two_part_scene(150)
    return scene, (part_ids == 0).float()


@pytest.fixture(scope="module")
def model():
    return ClosedFormPrior(TARGET)


@pytest.fixture(scope="module")
def robot_antenna():
    return default_scene_part("antenna")


def _config(**kw) -> EditConfig:
    base = dict(prompt="a red head", method="sds", steps=150, resolution=64, preview_every=0)
    base.update(kw)
    return EditConfig(**base)


def _outside_unchanged(before, mask_before, result, threshold=0.5) -> bool:
    return params_equal(before.subset(mask_before <= threshold), result.scene.subset(result.mask <= threshold))


@pytest.mark.parametrize("method", ["sds", "dds", "romap"])
def test_masked_part_moves_to_target_and_nothing_else_changes(robot_antenna, method):
    scene, mask = robot_antenna
    snapshot = scene.clone()
    config = _config(prompt="a blue antenna", method=method,
                     source_prompt="a yellow antenna" if method == "dds" else "", anchor_refresh=50, anchor_views=4)
    views = part_orbit(scene, mask, config).ring(4, resolution=64, offset_deg=10.0)
    before = masked_colour_error(scene, mask, BLUE, views)
    result = run_edit(scene, mask, config, ClosedFormPrior(BLUE))
    after = masked_colour_error(result.scene, result.mask, BLUE, views)
    assert after <= 0.3 * before, f"{method}: error {before:.3f} -> {after:.3f} (needs a 70% drop)"
    assert _outside_unchanged(scene, mask, result)
    assert params_equal(scene, snapshot)  # the input scene object is untouched
    assert result.steps_done == config.steps and not result.cancelled


def test_dds_with_source_equal_to_target_changes_nothing(robot_antenna):
    scene, mask = robot_antenna
    config = _config(method="dds", prompt="a blue antenna", source_prompt="a blue antenna", steps=30)
    result = run_edit(scene, mask, config, ClosedFormPrior(BLUE))
    assert params_equal(result.scene, scene) and torch.equal(result.mask, mask)


def test_same_seed_same_result_other_seed_differs(scene_and_mask, model):
    scene, mask = scene_and_mask
    a = run_edit(scene, mask, _config(steps=12, seed=3), model)
    b = run_edit(scene, mask, _config(steps=12, seed=3), model)
    c = run_edit(scene, mask, _config(steps=12, seed=4), model)
    assert params_equal(a.scene, b.scene)
    assert not params_equal(a.scene, c.scene)


def test_cancel_mid_job_returns_input_unchanged(scene_and_mask, model):
    scene, mask = scene_and_mask
    snapshot = scene.clone()
    steps_seen = []
    result = run_edit(scene, mask, _config(steps=50), model, on_event=lambda e: steps_seen.append(e.step),
                      should_stop=lambda: len(steps_seen) >= 5)
    assert result.cancelled and result.steps_done == 5 and steps_seen == [1, 2, 3, 4, 5]
    assert result.scene is scene and params_equal(scene, snapshot) and torch.equal(result.mask, mask)


def test_events_report_progress_eta_and_previews(scene_and_mask, model):
    scene, mask = scene_and_mask
    events: list[Progress] = []
    run_edit(scene, mask, _config(steps=6, preview_every=3, preview_resolution=32), model, on_event=events.append)
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6] and all(e.total == 6 for e in events)
    assert events[-1].eta_s == 0 and events[0].eta_s is None and events[3].eta_s > 0 and events[-1].elapsed_s >= events[0].elapsed_s
    assert all("loss" in e.losses and np.isfinite(e.losses["loss"]) for e in events)
    previews = [e.step for e in events if e.preview is not None]
    assert previews == [3, 6]
    p = events[2].preview
    assert p.dtype == np.uint8 and p.shape == (32, 32, 3) and p.std() > 0


def test_soft_and_subthreshold_weights(scene_and_mask, model):
    """Weights <= threshold are frozen; a weight of 0.6 moves less than a weight of 1."""
    scene, mask = scene_and_mask
    soft = mask.clone()
    head = mask.nonzero().flatten()
    soft[head[:50]] = 0.4  # below the 0.5 threshold: frozen
    soft[head[50:100]] = 0.6
    config = _config(steps=20, densify=DensifyConfig(enabled=False))
    result = run_edit(scene, soft, config, model)
    assert params_equal(result.scene.subset(head[:50]), scene.subset(head[:50]))
    move = (result.scene.sh0 - scene.sh0).abs().flatten(1).mean(1)
    assert move[head[50:100]].mean() < 0.8 * move[head[100:]].mean()


def test_densify_adds_gaussians_only_inside_the_mask(scene_and_mask, model):
    scene, mask = scene_and_mask
    config = _config(steps=40, edit="shape", densify=DensifyConfig(start_step=10, interval=10, grad_threshold=0.0,
                                                    grow_fraction=0.2, scale_threshold=0.0))
    result = run_edit(scene, mask, config, model)
    num_masked = int((mask > 0.5).sum())
    assert result.num_split > 0 and len(result.scene) > len(scene)
    assert int((result.mask > 0.5).sum()) == num_masked + result.num_split + result.num_cloned - result.num_pruned
    assert _outside_unchanged(scene, mask, result)
    new = result.scene.means[len(scene):]
    region, _ = plan_region(scene, mask, config)
    assert bool(region.contains(new).all())  # every child was born inside the edit region


def test_prior_removal_resets_only_masked_colour(scene_and_mask, model):
    scene, mask = scene_and_mask
    config = _config(steps=1, lr=type(_config().lr)(**{k: 0.0 for k in ("means", "scales", "quats", "opacities",
                                                                       "sh0", "shN")}),
                     prior=PriorRemoval(enabled=True), densify=DensifyConfig(enabled=False))
    result = run_edit(scene, mask, config, model)
    head = result.mask > 0.5
    assert torch.allclose(result.scene.base_colors()[head], torch.tensor(0.5), atol=1e-6)
    assert torch.allclose(result.scene.shN[head], scene.shN[mask > 0.5], atol=1e-6)  # bands kept (prior_removal.py)
    assert _outside_unchanged(scene, mask, result)


class _Untouchable:
    """A guidance model that fails the test if the edit does any work with it."""

    latent_scale = 8
    device = torch.device("cpu")
    family = "diffusion"  # metadata the checks may read (the method's t range depends on it), not work

    def __getattr__(self, name):
        raise AssertionError(f"work started before validation finished (model.{name})")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(mask="zeros"), "mask is empty"),
        (dict(mask="short"), "mask has 299 weights but the scene has 300"),
        (dict(mask="weak"), "no Gaussian has mask weight above 0.5"),
        (dict(mask="nan"), "NaN"),
        (dict(mask="2d"), "1-D"),
        (dict(prompt="  "), "prompt is empty"),
        (dict(method="dds"), "DDS needs a source prompt"),
        (dict(method="magic"), "unknown edit method 'magic'"),
        (dict(resolution=8), "resolution must be"),
        (dict(resolution=5000), "resolution must be"),
        (dict(resolution=60), "multiple of 8"),
        (dict(steps=0), "steps must be"),
        (dict(steps=10**6), "steps must be"),
        (dict(scene="nan"), "NaN/Inf"),
    ],
)
def test_bad_input_is_refused_before_any_work(scene_and_mask, change, message):
    scene, mask = scene_and_mask
    snapshot = scene.clone()
    change = dict(change)
    m = {"zeros": torch.zeros_like(mask), "short": mask[1:], "weak": mask * 0.3,
         "nan": torch.where(mask > 0, torch.nan, mask), "2d": mask[None]}.get(change.pop("mask", None), mask)
    s = scene
    if change.pop("scene", None) == "nan":
        s = scene.clone()
        s.means[7, 1] = float("inf")  # a scene can only get NaN/Inf by in-place corruption after construction
    config = _config(**change)
    with pytest.raises(ValueError, match=message):
        run_edit(s, m, config, _Untouchable())
    assert params_equal(scene, snapshot)


def test_boolean_and_numpy_masks_are_accepted(scene_and_mask):
    scene, mask = scene_and_mask
    as_bool = check_edit_inputs(scene, (mask > 0).numpy(), _config())
    assert as_bool.dtype == torch.float32 and torch.equal(as_bool, mask)


def test_romap_anchors_are_made_for_the_pool_and_refreshed_every_k_steps(scene_and_mask, model):
    from engine.edit import build_loss

    scene, mask = scene_and_mask
    config = _config(method="romap", steps=10, anchor_refresh=4, anchor_views=3, densify=DensifyConfig(enabled=False))
    real = build_loss(config, model)
    made, anchors_seen = [], []

    class Recording:
        def make_anchors(self, images, mask2d, *, generator=None):
            made.append(images.shape[0])
            return real.make_anchors(images, mask2d, generator=generator)

        def __call__(self, images, **kw):
            anchors_seen.append(kw["anchors"] is not None and kw["anchors"].shape == images.shape)
            return real(images, **kw)

    run_edit(scene, mask, config, model, loss_fn=Recording())
    assert made == [3, 3, 3] and len(anchors_seen) == 10 and all(anchors_seen)


def test_iterating_iter_edit_gives_what_run_edit_gives(scene_and_mask, model):
    """The generator and the callback runner are one loop: same seed, bit-identical scene, mask, losses and
    events (densification and previews included); the result comes last."""
    from engine.edit import EditResult, iter_edit

    scene, mask = scene_and_mask
    config = _config(steps=8, seed=5, preview_every=4, preview_resolution=24, edit="shape",
                     densify=DensifyConfig(start_step=4, interval=4, grad_threshold=0.0, grow_fraction=0.3))
    events: list[Progress] = []
    ran = run_edit(scene, mask, config, model, on_event=events.append)
    records = list(iter_edit(scene, mask, config, model, should_stop=None))
    iterated = records[-1]
    assert isinstance(iterated, EditResult) and all(isinstance(r, Progress) for r in records[:-1])
    assert ran.num_split > 0  # the rows changed on the way
    assert params_equal(ran.scene, iterated.scene) and torch.equal(ran.mask, iterated.mask)
    assert ran.losses == iterated.losses and "psnr_ideal" in ran.losses
    assert [(e.step, e.losses, e.num_gaussians) for e in events] == [
        (e.step, e.losses, e.num_gaussians) for e in records[:-1]]
    assert all(np.array_equal(a.preview, b.preview) for a, b in zip(events, records) if a.preview is not None)


def test_iter_edit_refuses_bad_input_at_the_call_and_ends_with_the_input_when_stopped(scene_and_mask, model):
    from engine.edit import EditResult, iter_edit

    scene, mask = scene_and_mask
    with pytest.raises(ValueError, match="prompt is empty"):
        iter_edit(scene, mask, _config(prompt=""), _Untouchable())  # before anything is iterated
    seen = []
    for record in iter_edit(scene, mask, _config(steps=10), model, should_stop=lambda: len(seen) >= 2):
        seen.append(record)
    assert [type(r) for r in seen] == [Progress, Progress, EditResult]
    assert seen[-1].cancelled and seen[-1].steps_done == 2 and seen[-1].scene is scene


