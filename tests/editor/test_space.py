"""Hugging Face Space mode: one port (no Viser), streamed renders with orbit controls, gr.Model3D of the scene."""

from __future__ import annotations

import urllib.request

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

    from editor.backend import _Z_UP_TO_Y_DOWN, for_web_viewer
    from engine.render.projection import covariances_3d
    from engine.scene import random_scene

    scene = random_scene(50, seed=1, sh_degree=1)
    turned = for_web_viewer(scene)
    R = _Z_UP_TO_Y_DOWN
    assert torch.allclose(turned.means, scene.means @ R.T)
    assert torch.allclose(covariances_3d(turned.quats, turned.scales), R @ covariances_3d(scene.quats, scene.scales) @ R.T,
                          atol=1e-5)
    assert torch.equal(turned.sh0, scene.sh0) and turned.sh_degree == 0
    assert torch.allclose(R @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]))  # up becomes -y
