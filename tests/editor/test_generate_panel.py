"""The Scene panel's "Generate from text" through the app's public API (gradio_client): a tiny closed-form
generation replaces the scene as one history entry, undo brings the scene back, bad input is refused."""

from __future__ import annotations

import re

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from engine.io import load
from tests.editor.apphelpers import running_app

RED = "closed-form:#d02020"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("gen")) as running:
        yield running


def _generate(client: Client, prompt: str = "a red ball", *, steps: int = 4, count: int = 150, init="sphere"):
    job = client.submit(prompt, RED, "sds", init, steps, 0, 32, count, api_name="/generate")
    outputs = list(job)
    return outputs, job.result()


def _count(info: str) -> int:
    return int(re.search(r"id='scene-count'>([\d,]+)<", info).group(1).replace(",", ""))


def test_generate_replaces_the_scene_and_undo_goes_back(app):
    client = Client(app.url, verbose=False)
    assert "/generate" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    original = load(app.scene_path)
    outputs, (bar, preview, info) = _generate(client)
    assert 'data-state="done"' in bar and 'data-step="4"' in bar, bar
    assert any('data-state="running"' in out[0] or 'data-state="queued"' in out[0] for out in outputs)
    assert preview  # a live preview image reached the page
    assert _count(info) == 150 and "generated: a red ball" in info
    generated = load(client.predict("ply", api_name="/export"))
    assert len(generated) == 150 != len(original)

    assert "generate (sds): a red ball" in client.predict(api_name="/undo")
    back = load(client.predict("ply", api_name="/export"))
    assert len(back) == len(original) and (back.means - original.means).abs().max() < 1e-6


def test_empty_prompt_is_refused_and_nothing_changes(app):
    client = Client(app.url, verbose=False)
    before = len(load(client.predict("ply", api_name="/export")))
    with pytest.raises(AppError, match="prompt is empty"):
        _generate(client, prompt="   ")
    assert len(load(client.predict("ply", api_name="/export"))) == before
