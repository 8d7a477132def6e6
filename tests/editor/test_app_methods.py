"""The app drives the score-distillation family on a rectified-flow model: a tiny SD3-layout pipeline saved to a
folder (tests/conftest.py's `tiny_flow_dir`) is the app's model, loaded offline by the engine worker the Edit
panel's Run uses; an edit with a variant and a timestep schedule chosen in the panel runs to the end, changes
only selected Gaussians, and reaches the engine with the schedule and the model's family."""

from __future__ import annotations

import re

import pytest
import torch
from gradio_client import Client

import engine.edit.loop as edit_loop
from engine.guidance.methods import family_of
from engine.io import load
from tests.editor.apphelpers import running_app


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_a_variant_with_a_schedule_edits_through_the_app_on_a_saved_sd3_pipeline(tmp_path, tiny_flow_dir, offline,
                                                                                 monkeypatch):
    seen = []
    build = edit_loop.build_loss

    def spy(config, model):  # what the worker's run_edit hands the loss builder
        seen.append((config.method, config.schedule, family_of(model)))
        return build(config, model)

    monkeypatch.setattr(edit_loop, "build_loss", spy)
    with running_app(tmp_path, model=str(tiny_flow_dir)) as app:
        client = Client(app.url, verbose=False)
        client.predict("brush", "add", 60, "vote", 8, api_name="/set_tool")
        selected = int(client.predict(256, 192, api_name="/click_view"))
        original = load(app.scene_path)
        assert 0 < selected < len(original)
        job = client.submit("a red blob", "a grey blob", "dreamcatalyst", 2, 0, 32, 0, 1, False, False, 1.0,
                            "appearance", "dreamtime", api_name="/run_edit")
        bars = [out[0] for out in job]
        state = dict(re.findall(r'data-(\w+)="([^"]*)"', bars[-1]))
        assert state["state"] == "done" and state["step"] == "2", bars[-1]
        edited = load(client.predict("ply", api_name="/export"))
    assert seen == [("dreamcatalyst", "dreamtime", "flow")]
    assert len(edited) == len(original)  # a colour edit: geometry and count kept
    changed = (edited.sh0 != original.sh0).flatten(1).any(1)
    assert 0 < int(changed.sum()) <= selected
    for name, value in original.items():
        assert torch.equal(getattr(edited, name)[~changed], value[~changed]), name
    for name in ("means", "scales", "quats", "opacities"):
        assert torch.equal(getattr(edited, name), getattr(original, name)), name
