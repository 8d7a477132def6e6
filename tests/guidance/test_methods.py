"""The method registry, and every variant end to end: a masked edit on a two-prompt Gaussian prior and on the
tiny random SD 1.5-shaped pipeline (loaded offline through the real loader), text-to-3D on the tiny pipeline.

Both edit runs check what every method must keep: finite losses, the masked part moved, and every unmasked
Gaussian bit-identical. What they cannot check is image quality: the tiny pipeline's weights are random.
"""

from __future__ import annotations

import math

import pytest
import torch

from engine.edit import METHODS as EDIT_CHOICES
from engine.edit import EditConfig, check_edit_inputs, run_edit
from engine.generate import METHODS as GENERATE_CHOICES
from engine.generate import GenerateConfig, run_generate
from engine.guidance import ClosedFormPrior, load_guidance
from engine.guidance.methods import (
    EDIT_METHODS, FLOW, GENERATE_METHODS, METHODS, SCHEDULES, build_loss, chosen_schedule, dropdown_choices,
    family_of, make_schedule, method_line, resolve, schedule_choices,
)
from tests.edit.scenes import params_equal, two_part_scene

from .two_prompt_prior import TwoPromptPrior

VARIANTS = ["ism", "nfsd", "csd", "esd", "dreamcatalyst", "lusd"]


def _config(method: str, **kw) -> EditConfig:
    base = dict(prompt="a red head", source_prompt="a blue head", method=method, steps=3, resolution=16,
                preview_every=0, edit="appearance", min_visible_fraction=0.0)
    return EditConfig(**{**base, **kw})


def test_every_surface_offers_the_registrys_methods():
    assert EDIT_CHOICES == EDIT_METHODS and GENERATE_CHOICES == GENERATE_METHODS
    assert set(VARIANTS) <= set(EDIT_METHODS) and {"nfsd", "csd", "esd", "ism"} <= set(GENERATE_METHODS)
    for job, names in (("edit", EDIT_METHODS), ("generate", GENERATE_METHODS)):
        choices = dropdown_choices(job)
        assert [value for _, value in choices] == list(names)
        assert all(" — " in label and "\n" not in label for label, _ in choices)
    prior = ClosedFormPrior((1, 0, 0))
    for name, info in METHODS.items():
        loss = build_loss(name, prior, prompt="red", source_prompt="blue", guidance_scale=info.guidance_scale,
                          timesteps=make_schedule(info.schedule, info.t_min, info.t_max, info.t_max_end))
        assert callable(loss)


def test_per_method_defaults_and_refusals():
    assert _config("dreamcatalyst").effective_t_range() == (0.2, 0.9)
    assert _config("dreamcatalyst").effective_schedule() == "linear"
    assert _config("lusd", t_min=0.3).effective_t_range() == (0.3, 0.95)
    assert _config("nfsd").effective_guidance_scale() == 7.5 and _config("csd").effective_guidance_scale() == 2.0
    scene, part_ids, _ = two_part_scene(10)
    mask = (part_ids == 0).float()
    with pytest.raises(ValueError, match="source prompt"):
        check_edit_inputs(scene, mask, _config("dreamcatalyst", source_prompt=""), ClosedFormPrior((1, 0, 0)))
    with pytest.raises(ValueError, match="weight-free"):
        check_edit_inputs(scene, mask, _config("csd"), ClosedFormPrior((1, 0, 0)))
    with pytest.raises(ValueError, match="schedule"):
        check_edit_inputs(scene, mask, _config("sds", schedule="cosine"), ClosedFormPrior((1, 0, 0)))
    check_edit_inputs(scene, mask, _config("lusd", source_prompt=""), ClosedFormPrior((1, 0, 0)))  # optional


def test_defaults_resolve_per_method_and_family_and_the_users_value_wins():
    """(guidance, t_min, t_max, t_max_end, schedule): the diffusion family's table; on the flow family RoMaP's
    released t in [0.3, 0.98] without annealing, except dreamcatalyst and lusd (their released ranges)."""
    def row(method, family="diffusion", **given):
        d = resolve(method, family, **given)
        return d.guidance_scale, d.t_min, d.t_max, d.t_max_end, d.schedule

    assert row("sds") == (100.0, 0.02, 0.98, 0.5, "random") and row("dds") == (7.5, 0.02, 0.98, 0.98, "random")
    for method in ("sds", "romap", "esd"):
        assert row(method, FLOW) == (100.0, 0.3, 0.98, 0.98, "random")
    assert row("nfsd", FLOW) == (7.5, 0.3, 0.98, 0.98, "random") and row("csd", FLOW)[0] == 2.0
    assert row("dreamcatalyst", FLOW) == row("dreamcatalyst") == (7.5, 0.2, 0.9, 0.9, "linear")
    assert row("lusd", FLOW) == row("lusd") == (7.5, 0.05, 0.95, 0.95, "random")
    mine = row("sds", FLOW, guidance_scale=20.0, t_min=0.1, schedule="dreamtime")
    assert mine == (20.0, 0.1, 0.98, 0.98, "dreamtime")
    assert row("sds", t_max=0.4) == (100.0, 0.02, 0.4, 0.4, "random")  # the annealing end never above t_max
    for config in (_config("ism"), GenerateConfig(prompt="x", method="ism")):  # both jobs resolve alike
        assert config.resolved(FLOW) == resolve("ism", FLOW) and config.resolved() == resolve("ism")
    with pytest.raises(ValueError, match="family"):
        resolve("sds", "unet")
    assert family_of(ClosedFormPrior((1, 0, 0))) == family_of(None) == "diffusion"


def test_panel_texts_come_from_the_registry():
    assert [value for _, value in schedule_choices()][1:] == list(SCHEDULES)
    assert chosen_schedule("default") is None and chosen_schedule("") is None and chosen_schedule("linear") == "linear"
    line = method_line("romap")
    assert "RoMaP" in line and "t 0.02-0.98 (t_max -> 0.5)" in line and "t 0.3-0.98, random" in line
    assert "guidance" not in method_line("lusd")  # LUSD normalizes an unguided difference


@pytest.mark.parametrize("method,schedule", [(m, "dreamtime" if m == "csd" else None) for m in VARIANTS])
def test_masked_edit_on_a_two_prompt_prior(method, schedule):
    scene, part_ids, _ = two_part_scene(15)
    mask = (part_ids == 0).float()
    seen: list[dict] = []
    result = run_edit(scene, mask, _config(method, schedule=schedule), TwoPromptPrior(),
                      on_event=lambda e: seen.append(e.losses))
    assert len(seen) == 3 and all(math.isfinite(v) for losses in seen for v in losses.values())
    assert params_equal(scene.subset(mask <= 0.5), result.scene.subset(result.mask <= 0.5))
    assert not torch.equal(scene.subset(mask > 0.5).sh0, result.scene.subset(result.mask > 0.5).sh0)


@pytest.fixture(scope="module")
def tiny_model(tiny_pipeline_dir):
    """The session's tiny SD 1.5-shaped pipeline (tests/guidance/conftest.py), loaded offline by the real loader."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield load_guidance(str(tiny_pipeline_dir), device="cpu")
    mp.undo()


@pytest.mark.parametrize("method", VARIANTS)
def test_masked_edit_on_the_tiny_diffusers_pipeline(tiny_model, method):
    scene, part_ids, _ = two_part_scene(10)
    mask = (part_ids == 0).float()
    seen: list[dict] = []
    result = run_edit(scene, mask, _config(method, steps=1), tiny_model, on_event=lambda e: seen.append(e.losses))
    assert len(seen) == 1
    assert all(math.isfinite(v) for losses in seen for v in losses.values())
    assert all(losses["grad_image"] > 0 for losses in seen)  # a finite, non-zero push reached the pixels
    assert params_equal(scene.subset(mask <= 0.5), result.scene.subset(result.mask <= 0.5))


@pytest.mark.parametrize("method", ["nfsd", "csd", "esd"])
def test_generation_on_the_tiny_diffusers_pipeline(tiny_model, method):
    config = GenerateConfig(prompt="a red apple", method=method, steps=1, resolution=16, num_gaussians=30,
                            preview_every=0, schedule="dreamtime")
    seen: list[dict] = []
    scene = run_generate(config, tiny_model, on_event=lambda e: seen.append(e.losses))
    assert len(scene) > 0 and all(math.isfinite(v) for losses in seen for v in losses.values())
    assert all(losses["grad_norm"] > 0 for losses in seen)
