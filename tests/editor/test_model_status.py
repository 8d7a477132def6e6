"""Model status: what the Model panel says about a spec, found without network or weights."""

from __future__ import annotations

import pytest

from editor.models import _probe, normalise_colour_spec
from editor.model_panel import status_markdown


def test_closed_form_is_always_available():
    state, source, _ = _probe("closed-form:#d02020")
    assert state == "available" and "no weights" in source


def test_incomplete_local_folder_is_named(tmp_path):
    (tmp_path / "unet").mkdir()
    state, _, message = _probe(str(tmp_path))
    assert state == "unavailable" and "vae/" in message and str(tmp_path) in message


def test_complete_local_folder_is_available(tmp_path):
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (tmp_path / sub).mkdir()
    assert _probe(str(tmp_path))[0] == "available"


def test_uncached_hub_model_offline_says_how_to_get_it(empty_hf_cache):
    state, _, message = _probe("someone/not-a-cached-model")
    assert state == "unavailable" and "hf download someone/not-a-cached-model" in message
    text = status_markdown({"spec": "someone/not-a-cached-model", "state": state, "message": message})
    assert "closed-form demo" in text and "🔴" in text


def test_malformed_spec_is_an_error():
    with pytest.raises(ValueError, match="closed-form"):
        _probe("closed-form:")


def test_colour_picker_values_become_hex_specs():
    assert normalise_colour_spec("closed-form:rgba(208, 32, 32, 1)") == "closed-form:#d02020"
    assert normalise_colour_spec("closed-form:#00ff00") == "closed-form:#00ff00"
    assert normalise_colour_spec("some/model") == "some/model"


def test_uncached_hub_model_with_no_route_to_the_hub_is_refused_quickly(monkeypatch, empty_hf_cache, time_limit):
    """Not offline by flag, but the hub cannot be reached (here: a closed local port): known in about a
    second, with the whole message (download command and the closed-form demo), instead of a download that
    retries for minutes."""
    import socket
    import time

    from engine.guidance import availability

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # not offline by flag: the probe must find out itself
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{port}")
    monkeypatch.setattr(availability, "_REACHABLE", {})
    t = time.monotonic()
    state, _, message = _probe("someone/not-a-cached-model")
    assert time.monotonic() - t < time_limit(5)
    assert state == "unavailable" and "cannot be reached" in message
    assert "hf download someone/not-a-cached-model" in message and "closed-form" in message


def test_run_is_refused_before_queueing_when_the_model_cannot_load(tmp_path, empty_hf_cache):
    import torch

    from editor.models import ModelChoice
    from editor.runners.local import LocalRunner
    from editor.scenes import SceneBundle
    from editor.session import Session
    from editor.settings import EditSettings
    from engine.scene import random_scene

    class NoWorker:  # any command sent to the worker would be a bug here
        def subscribe(self, fn):
            pass

        def __getattr__(self, name):
            raise AssertionError(f"the worker was asked to {name}")

    models = ModelChoice("someone/not-a-cached-model")
    runner = LocalRunner(type("Link", (), {"worker": NoWorker()})(), models)
    session = Session("s", SceneBundle(random_scene(40, seed=0), "random"), tmp_path)
    session.set_selection(torch.ones(40), label="all")
    with pytest.raises(ValueError, match="hf download someone/not-a-cached-model"):
        next(runner.run_edit(session, EditSettings(prompt="a red part", steps=3)))
    assert session.job.state == "idle"  # nothing was queued
