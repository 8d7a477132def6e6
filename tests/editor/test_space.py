"""Hugging Face Space mode: one port (no Viser), streamed renders with orbit controls, gr.Model3D of the scene."""

from __future__ import annotations

import re
from dataclasses import replace
import sys
import types
import urllib.request

import torch
from gradio_client import Client

from editor.space import FRONTMATTER_PATH, gpu_wrap
from engine.io import load
from tests.editor.apphelpers import running_app


def test_space_mode_serves_one_port_with_model3d(tmp_path):
    with running_app(tmp_path, space=True) as app:
        assert app.ctx.registry.viewer_factory is None  # no Viser server in a Space
        html = urllib.request.urlopen(app.url, timeout=30).read().decode()
        assert "viser-frame" not in html
        client = Client(app.url, verbose=False)
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert "/model3d" in endpoints and "/click_view" in endpoints
        path = client.predict(api_name="/model3d")
        assert path.endswith(".ply")
        assert len(load(path)) == len(load(app.scene_path))
        # The streamed view is the interactive one: a click selects.
        client.predict("brush", "add", 60, "vote", 8, api_name="/set_tool")
        assert int(client.predict(256, 192, api_name="/click_view")) > 0
        assert not any(s.viewer for s in app.ctx.registry.sessions())


class FakeSpaces(types.ModuleType):
    """Stands in for the `spaces` package: records which functions spaces.GPU decorated and which ran."""

    def __init__(self) -> None:
        super().__init__("spaces")
        self.decorated: list[tuple[str, int]] = []
        self.results: list = []

    def GPU(self, duration=None):  # noqa: N802 - the real package's name
        def decorate(fn):
            self.decorated.append((fn.__name__, duration))

            def on_gpu(*args, **kwargs):
                result = fn(*args, **kwargs)
                self.results.append(result)
                return result

            return on_gpu

        return decorate


def test_space_edit_runs_in_the_spaces_gpu_function_and_is_one_undoable_entry(tmp_path, monkeypatch):
    fake = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    with running_app(tmp_path, space=True) as app:
        assert ("run_edit_on_gpu", 300) in fake.decorated
        worker = app.ctx.jobs.worker
        monkeypatch.setattr(worker, "start_edit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("worker edit")))
        client = Client(app.url, verbose=False)
        client.predict("brush", "add", 60, "vote", 8, api_name="/set_tool")
        assert int(client.predict(256, 192, api_name="/click_view")) > 0
        client.predict("#d02020", api_name="/use_demo")
        (session,) = app.ctx.registry.sessions()
        selected = session.selection > 0.5
        original = load(client.predict("ply", api_name="/export"))

        job = client.submit("make it red", "", "sds", 8, 0, 64, 0, 1, False, False, api_name="/run_edit")
        bars = [out[0] for out in job]
        assert re.search(r'data-state="done"', bars[-1]), bars[-1]
        assert len(fake.results) == 1  # the decorated function ran the edit...
        edited = load(client.predict("ply", api_name="/export"))
        assert torch.equal(edited.sh0, fake.results[0][0].sh0)  # ...and its result is the session's scene
        changed = (edited.sh0 != original.sh0).flatten(1).any(1)
        assert changed.any() and not (changed & ~selected).any()  # only inside the mask
        assert torch.equal(edited.means[~selected], original.means[~selected])

        assert "edit (sds): make it red" in client.predict(api_name="/undo")
        restored = load(client.predict("ply", api_name="/export"))
        for name, value in original.items():
            assert torch.equal(getattr(restored, name), value), name


def test_space_generate_runs_in_the_spaces_gpu_function_and_undo_restores_the_scene(tmp_path, monkeypatch):
    fake = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    with running_app(tmp_path, space=True) as app:
        assert ("run_generate_on_gpu", 300) in fake.decorated
        worker = app.ctx.jobs.worker
        monkeypatch.setattr(worker, "start_generate",
                            lambda *a, **k: (_ for _ in ()).throw(AssertionError("worker generate")))
        client = Client(app.url, verbose=False)
        original = load(client.predict("ply", api_name="/export"))

        job = client.submit("a red ball", "closed-form:#d02020", "sds", "sphere", 3, 0, 32, 150,
                            api_name="/generate")
        outputs = list(job)
        bar, _, info = outputs[-1]
        assert 'data-state="done"' in bar, bar
        assert len(fake.results) == 1  # the decorated function ran the generation...
        generated = load(client.predict("ply", api_name="/export"))
        assert torch.equal(generated.means, fake.results[0][0].means)  # ...and its result is the session's scene
        assert len(generated) == 150 != len(original)
        assert "generated: a red ball" in info and "150" in info
        (session,) = app.ctx.registry.sessions()
        assert session.selection.shape == (150,) and not session.selection.any()

        assert "generate (sds): a red ball" in client.predict(api_name="/undo")  # one entry
        restored = load(client.predict("ply", api_name="/export"))
        for name, value in original.items():
            assert torch.equal(getattr(restored, name), value), name


def test_gpu_generate_stops_when_its_session_is_cancelled():
    from editor.space import _CANCELLED, cancel_gpu_edit, run_generate_on_gpu
    from engine.generate import GenerateConfig

    config = GenerateConfig(prompt="a red ball", model="closed-form:#d02020", steps=20, resolution=32,
                            num_gaussians=100)
    cancel_gpu_edit("g1")
    try:
        scene, summary = run_generate_on_gpu(None, config, "g1")
    finally:
        _CANCELLED.discard("g1")
    assert summary["cancelled"] and summary["steps_done"] == 0 and len(scene) == 100


def test_gpu_wrap_is_transparent_outside_a_space():
    def job(x, *, y=1):
        return x + y

    assert gpu_wrap(job)(1, y=2) == 3


def test_space_front_matter_is_valid_yaml():
    import yaml

    text = FRONTMATTER_PATH.read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"


def test_model3d_copy_is_turned_to_y_down_without_changing_shapes():
    import torch

    from editor.backend import for_web_viewer
    from engine.render.projection import covariances_3d
    from engine.scene import random_scene
    from engine.up import rotation_between

    scene = random_scene(50, seed=1, sh_degree=1)
    turned = for_web_viewer(scene)  # a +z-up scene (the default)
    R = rotation_between((0, 0, 1), (0, -1, 0)).float()
    assert torch.allclose(turned.means, scene.means @ R.T)
    assert torch.allclose(covariances_3d(turned.quats, turned.scales), R @ covariances_3d(scene.quats, scene.scales) @ R.T,
                          atol=1e-5)
    assert torch.equal(turned.sh0, scene.sh0) and turned.sh_degree == 0
    assert torch.allclose(R @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]))  # up becomes -y
    capture = for_web_viewer(scene, up=(0.0, -1.0, 0.0))  # a -y-up capture is already what web viewers expect
    assert torch.allclose(capture.means, scene.means) and torch.allclose(capture.quats, scene.quats)
    sideways = for_web_viewer(scene, up=(1.0, 0.0, 0.0))
    assert torch.allclose(sideways.means, scene.means @ rotation_between((1, 0, 0), (0, -1, 0)).float().T)


def test_gpu_edit_stops_when_its_session_is_cancelled_and_returns_the_input():
    from editor.space import _CANCELLED, cancel_gpu_edit, run_edit_on_gpu
    from engine.densify import DensifyConfig
    from engine.edit import EditConfig
    from tests.editor.apphelpers import small_scene

    scene = small_scene(60)
    mask = torch.zeros(60)
    mask[:20] = 1.0
    config = EditConfig(prompt="red", model="closed-form:#d02020", steps=50, resolution=32,
                        densify=DensifyConfig(enabled=False))
    cancel_gpu_edit("s1")
    try:
        out, out_mask, summary = run_edit_on_gpu(scene, mask, config, "s1")
    finally:
        _CANCELLED.discard("s1")
    assert summary["cancelled"] and summary["steps_done"] == 0
    assert torch.equal(out.sh0, scene.sh0) and torch.equal(out_mask, mask)
    _, _, summary = run_edit_on_gpu(scene, mask, replace(config, steps=2), "s2")  # other sessions run
    assert not summary["cancelled"] and summary["steps_done"] == 2
