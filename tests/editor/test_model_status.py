"""Model status: what the Model panel says about a spec, found without network or weights."""

from __future__ import annotations

import pytest

from editor.jobs import _normalise_colour_spec, _probe
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


def test_uncached_hub_model_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    state, _, message = _probe("someone/not-a-cached-model")
    assert state == "unavailable" and "hf download someone/not-a-cached-model" in message
    text = status_markdown({"spec": "someone/not-a-cached-model", "state": state, "message": message})
    assert "closed-form demo" in text and "🔴" in text


def test_malformed_spec_is_an_error():
    with pytest.raises(ValueError, match="closed-form"):
        _probe("closed-form:")


def test_colour_picker_values_become_hex_specs():
    assert _normalise_colour_spec("closed-form:rgba(208, 32, 32, 1)") == "closed-form:#d02020"
    assert _normalise_colour_spec("closed-form:#00ff00") == "closed-form:#00ff00"
    assert _normalise_colour_spec("some/model") == "some/model"
