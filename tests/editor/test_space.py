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
