"""Text-to-3D generation: convergence to a known object, colour, the tiny diffusers model, events, bad input.

The proof of convergence uses `ReferencePrior`: the closed-form prior whose target for each sampled view is the
render of a known reference object (two coloured blobs) from that camera. Generation from a random-coloured
sphere must cut the image error to the reference on fixed evaluation views by at least 60%.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from engine.generate import (
    GenerateConfig,
    GenerateLearningRates,
    check_generate_config,
    default_densify,
    initial_scene,
    object_orbit,
    run_generate,
)
from engine.guidance import ClosedFormPrior, load_guidance
from engine.guidance.reference import ReferencePrior
from engine.io import save
from engine.render import render
from engine.render.images import rgb_renderer
from engine.scene import GaussianScene, random_scene
from tests.generate.scenes import two_blob_reference

RED = (0.8, 0.1, 0.1)


def fast_config(**overrides) -> GenerateConfig:
    """Small renders, a small sphere, 5x the default learning rates, densify every 20 steps, no annealing."""
    lr = GenerateLearningRates(means=0.01, scales=0.025, quats=0.025, opacities=0.25, sh0=0.05)
    densify = default_densify()
    densify.start_step, densify.interval = 20, 20
    settings = dict(prompt="two blobs", steps=60, resolution=48, num_gaussians=250, lr=lr, densify=densify,
                    preview_every=0, t_max_end=0.98)
    settings.update(overrides)
    return GenerateConfig(**settings)


def reference_error(scene: GaussianScene, cameras, target) -> float:
    with torch.no_grad():
        return float((render(scene, cameras, background=(1.0, 1.0, 1.0)).rgb - target).abs().mean())


@pytest.mark.parametrize("method", ["sds", "ism"])
def test_generation_from_a_sphere_reproduces_the_reference_views(method):
    config = fast_config(method=method)
    prior = ReferencePrior(two_blob_reference(), render_fn=rgb_renderer())
    start = initial_scene(config)
    views = object_orbit(start, config).ring(6, resolution=48, offset_deg=10.0)  # fixed views, not the training ones
    target = prior.target_images(views)
    before = reference_error(start, views, target)
    counts = []
    result = run_generate(config, prior, on_event=lambda e: counts.append(e.num_gaussians))
    after = reference_error(result, views, target)
    assert after <= 0.4 * before, (before, after)
    assert len(counts) == config.steps and len(result) == counts[-1]
    if method == "sds":
        assert len(set(counts)) > 1  # densify / prune changed the scene during the run


def test_sds_with_a_closed_form_colour_turns_the_sphere_that_colour():
    config = fast_config(prompt="a red ball", steps=30, resolution=32, num_gaussians=200)
    start = initial_scene(config)
    views = object_orbit(start, config).ring(4, resolution=32, offset_deg=30.0)

    def colour_error(scene):  # alpha-weighted mean colour of the object's pixels vs RED
        with torch.no_grad():
            out = render(scene, views)  # no background: rgb is premultiplied by alpha
            mean = out.rgb.sum((0, 1, 2)) / out.alpha.sum()
        return float((mean - torch.tensor(RED)).norm())

    result = run_generate(config, ClosedFormPrior(RED))
    assert colour_error(start) > 0.4
    assert colour_error(result) < 0.12


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.guidance.tiny_models import save_tiny_pipeline

    path = save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "model")
    return load_guidance(str(path), device="cpu")


@pytest.mark.parametrize("method", ["sds", "ism"])
def test_tiny_diffusers_model_runs_end_to_end(tiny_model, method):
    config = GenerateConfig(prompt="a red apple", method=method, steps=2, resolution=16, num_gaussians=80,
                            preview_every=1, preview_resolution=16)
    events = []
    result = run_generate(config, tiny_model, on_event=events.append)
    assert [e.step for e in events] == [1, 2]
    assert all(np.isfinite(list(e.losses.values())).all() for e in events)
    assert events[-1].losses["grad_norm"] > 0
    assert all(torch.isfinite(t).all() for _, t in result.items())
    start = initial_scene(config)
    assert not torch.equal(result.sh0, start.sh0)  # the model's gradient moved the scene


def test_events_previews_and_cancel():
    config = fast_config(prompt="red", steps=10, resolution=32, num_gaussians=100, preview_every=3,
                         preview_resolution=24)
    events = []
    result = run_generate(config, ClosedFormPrior(RED), on_event=events.append, should_stop=lambda: len(events) >= 4)
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert [e.preview is not None for e in events] == [False, False, True, False]
    preview = events[2].preview
    assert preview.dtype == np.uint8 and preview.shape == (24, 24, 3) and preview.min() < 250  # not blank
    assert all(e.total == 10 and e.resolution == 32 for e in events)
    assert [e.eta_s is None for e in events] == [True, True, True, False] and events[3].eta_s > 0  # EtaClock
    assert all(torch.isfinite(t).all() for _, t in result.items())


def test_cancel_before_the_first_step_returns_the_starting_scene(tmp_path):
    start = random_scene(30, seed=4, extent=0.3)
    save(start, tmp_path / "start.ply")
    config = fast_config(init=str(tmp_path / "start.ply"), steps=5)
    result = run_generate(config, ClosedFormPrior(RED), should_stop=lambda: True)
    assert all(torch.allclose(getattr(result, n), t) for n, t in start.items())


def test_same_seed_same_scene_and_a_different_seed_differs():
    prior = ClosedFormPrior(RED)
    a = run_generate(fast_config(steps=4, resolution=16, num_gaussians=50, seed=1), prior)
    b = run_generate(fast_config(steps=4, resolution=16, num_gaussians=50, seed=1), prior)
    c = run_generate(fast_config(steps=4, resolution=16, num_gaussians=50, seed=2), prior)
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))
    assert not torch.equal(a.means, c.means)


def test_resolution_grows_from_low_to_high():
    config = GenerateConfig(prompt="x", steps=101, resolution=512, resolution_ramp=0.5)
    sizes = [config.resolution_at(step, latent_scale=8) for step in range(101)]
    assert sizes[0] == 128 and sizes[50] == 512 and sizes[-1] == 512
    assert all(a <= b for a, b in zip(sizes, sizes[1:])) and all(s % 8 == 0 for s in sizes)
    events = []
    run_generate(fast_config(steps=5, resolution=32, resolution_start=16, resolution_ramp=1.0,
                             num_gaussians=40), ClosedFormPrior(RED), on_event=events.append)
    assert [e.resolution for e in events] == [16, 20, 24, 28, 32]


class SpyModel(ClosedFormPrior):
    """A closed-form prior that counts every call a loss makes, to prove bad input costs no work."""

    def __init__(self, latent_scale: int = 1):
        super().__init__(RED)
        self.latent_scale = latent_scale
        self.calls = 0

    def encode_images(self, images):
        self.calls += 1
        return super().encode_images(images)

    def predict_noise(self, *args, **kwargs):
        self.calls += 1
        return super().predict_noise(*args, **kwargs)


def _empty_cloud(tmp_path):
    path = tmp_path / "empty.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n")
    return str(path)


def _garbage_mesh(tmp_path):
    path = tmp_path / "broken.obj"
    path.write_text("not a mesh at all\n")
    return str(path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"steps": 0}, "steps must be"),
        ({"steps": -3}, "steps must be"),
        ({"steps": 100_001}, "steps must be"),
        ({"steps": 2.5}, "steps must be"),
        ({"resolution": 8}, "resolution must be"),
        ({"resolution": 4096}, "resolution must be"),
        ({"resolution": 36, "latent_scale": 8}, "multiple of 8"),
        ({"resolution_start": 64, "resolution": 32}, "low to high"),
        ({"method": "vsd"}, "unknown generation method"),
        ({"init": "cube"}, "does not exist"),
        ({"init": "missing.obj"}, "does not exist"),
        ({"init": _garbage_mesh}, "broken.obj"),
        ({"init": _empty_cloud}, "empty.ply"),
        ({"num_gaussians": 0}, "num_gaussians"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"t_min": 0.9, "t_max": 0.1}, "t_min"),
        ({"radius_range": (0.0, 1.0)}, "radius_range"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    overrides = dict(overrides)
    model = SpyModel(overrides.pop("latent_scale", 1))
    if callable(overrides.get("init")):
        overrides["init"] = overrides["init"](tmp_path)
    config = fast_config(**overrides)
    events = []
    with pytest.raises(ValueError, match=message):
        run_generate(config, model, on_event=events.append)
    assert model.calls == 0 and events == []


def test_config_check_accepts_the_defaults_and_a_model_latent_scale():
    check_generate_config(GenerateConfig(prompt="a chair"))
    check_generate_config(GenerateConfig(prompt="a chair"), types.SimpleNamespace(latent_scale=8))
    assert GenerateConfig(prompt="x", resolution=32).start_resolution(1) == 32


def test_a_mesh_is_a_usable_starting_scene(tmp_path):
    pytest.importorskip("engine.io.mesh")
    cube = tmp_path / "cube.obj"
    corners = [(x, y, z) for x in (-0.3, 0.3) for y in (-0.3, 0.3) for z in (-0.3, 0.3)]
    faces = [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7), (1, 3, 7, 5), (2, 6, 8, 4)]
    cube.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in corners)
                    + "".join(f"f {a} {b} {c}\nf {a} {c} {d}\n" for a, b, c, d in faces))
    config = fast_config(init=str(cube), steps=3, resolution=16)
    start = initial_scene(config)
    lo, hi = start.bounding_box()
    assert len(start) > 0 and float(lo.min()) > -0.35 and float(hi.max()) < 0.35
    result = run_generate(config, ClosedFormPrior(RED), initial=start)
    assert len(result) > 0 and all(torch.isfinite(t).all() for _, t in result.items())


def test_iterating_iter_generate_gives_what_run_generate_gives():
    """One loop behind both: same seed, bit-identical scene and events (densification and previews included),
    and the scene comes last; bad input is refused at the call."""
    from engine.generate import iter_generate
    from engine.optimize import Progress

    config = fast_config(steps=8, resolution=16, num_gaussians=60, seed=2, preview_every=4, preview_resolution=16)
    config.densify.start_step, config.densify.interval = 4, 4
    prior = ClosedFormPrior(RED)
    events = []
    ran = run_generate(config, prior, on_event=events.append)
    records = list(iter_generate(config, prior, should_stop=None))
    assert isinstance(records[-1], GaussianScene) and all(isinstance(r, Progress) for r in records[:-1])
    assert len(ran) != config.num_gaussians  # densification changed the rows on the way
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(ran.items(), records[-1].items()))
    assert [(e.step, e.losses, e.num_gaussians, e.resolution) for e in events] == [
        (e.step, e.losses, e.num_gaussians, e.resolution) for e in records[:-1]]
    assert all(np.array_equal(a.preview, b.preview) for a, b in zip(events, records) if a.preview is not None)
    with pytest.raises(ValueError, match="prompt is empty"):
        iter_generate(fast_config(prompt=""), SpyModel())


def test_previews_are_seen_from_the_users_angles_when_given():
    """Issue 26.7: the preview shows the object the way the user looks at the scene (framed on the object),
    not a fixed angle of the generation's orbit."""
    from engine.generate import iter_generate
    from engine.render.images import to_uint8

    config = fast_config(prompt="red", steps=2, resolution=32, num_gaussians=60, preview_every=2,
                         preview_resolution=24)
    start = initial_scene(config)

    def last_preview(angles):
        items = list(iter_generate(config, ClosedFormPrior(RED), initial=start, preview_angles=angles))
        return items[-2].preview, items[-1]

    seen, result = last_preview((150.0, -35.0))
    camera = object_orbit(start, config).at(150.0, -35.0, resolution=24)
    expected = to_uint8(render(result, camera, background=tuple(config.background),
                               backend=config.render_backend).rgb[0])
    assert np.array_equal(seen, expected)
    fixed, _ = last_preview(None)
    assert not np.array_equal(seen, fixed)
