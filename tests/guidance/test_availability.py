"""Can a model spec load now? Answered from the file system, the Hugging Face cache and at most one quick
connection attempt — never a download. The HF cache is isolated by patching huggingface_hub.constants (the
library reads HF_HOME once, at import: setting it in a test changes nothing)."""

from __future__ import annotations

import socket
import time

import pytest

from engine.guidance import availability
from engine.guidance.availability import Availability, probe
from engine.guidance.base import ModelSpecError
from engine.guidance.loading import SUBFOLDERS, missing_subfolders

UNCACHED = "someone/not-a-cached-model"


@pytest.fixture
def empty_hf_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache, so no model a developer happens to have cached answers 'available'."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-cache" / "hub"))
    return tmp_path / "hf-cache" / "hub"


@pytest.fixture
def fresh_reachability(monkeypatch):
    """Forget earlier connection attempts (they are remembered for half a minute)."""
    monkeypatch.setattr(availability, "_REACHABLE", {})


def _closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pretend_cached(cache, repo_id: str) -> None:
    """The cache's own layout for one snapshot holding model_index.json (what `hf download` leaves)."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")


def test_closed_form_and_reference_priors_need_no_weights(tmp_path):
    scene = tmp_path / "target.ply"
    scene.write_bytes(b"ply")
    for spec in ("closed-form:#d02020", f"reference:{scene}"):
        state, source, message = probe(spec)
        assert state == "available" and "no weights" in source and message == ""


def test_local_folder_needs_the_whole_diffusers_layout(tmp_path):
    (tmp_path / "unet").mkdir()
    found = probe(str(tmp_path))
    assert found.state == "unavailable" and str(tmp_path) in found.message
    assert all(f"{sub}/" in found.message for sub in missing_subfolders(tmp_path))
    assert "unet/" not in found.message.split("missing")[1]
    for sub in SUBFOLDERS:
        (tmp_path / sub).mkdir(exist_ok=True)
    assert missing_subfolders(tmp_path) == []
    assert probe(str(tmp_path)) == Availability("available", str(tmp_path.resolve()), "loads with the first edit")


def test_a_cached_hub_model_is_available_without_network(empty_hf_cache, monkeypatch):
    monkeypatch.setattr(availability, "hub_reachable", lambda: pytest.fail("a cached model needs no network"))
    _pretend_cached(empty_hf_cache, "owner/cached-model")
    state, source, _ = probe("owner/cached-model")
    assert state == "available" and source.startswith("Hugging Face cache: ")
    assert str(empty_hf_cache) in source


def test_uncached_hub_model_offline_says_how_to_get_it(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(availability, "hub_reachable", lambda: pytest.fail("offline: no connection attempt"))
    state, source, message = probe(UNCACHED)
    assert state == "unavailable" and source == ""
    assert "HF_HUB_OFFLINE" in message and f"hf download {UNCACHED} --local-dir models/not-a-cached-model" in message
    assert "--model models/not-a-cached-model" in message and "closed-form:#d02020" in message


def test_callers_word_the_next_steps(empty_hf_cache, monkeypatch):
    """The engine says what is missing and the download command; the caller (CLI, app) says how to use it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = probe(UNCACHED, next_steps="then open {folder} in the Model tab.").message
    assert message.endswith("then open models/not-a-cached-model in the Model tab.")


def test_uncached_hub_model_with_no_route_is_refused_within_about_a_second(empty_hf_cache, monkeypatch,
                                                                         fresh_reachability):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{_closed_port()}")
    t = time.monotonic()
    state, _, message = probe(UNCACHED)
    assert time.monotonic() - t < availability.REACH_TIMEOUT_S + 1.0
    assert state == "unavailable" and "cannot be reached" in message and "127.0.0.1" in message
    assert f"hf download {UNCACHED}" in message


def test_uncached_hub_model_online_is_not_downloaded_yet(empty_hf_cache, monkeypatch, fresh_reachability):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    with socket.socket() as server:  # a hub that accepts connections
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        state, source, message = probe(UNCACHED)
    assert state == "not downloaded" and source == f"Hugging Face hub: {UNCACHED}"
    assert "first edit downloads it" in message and f"hf download {UNCACHED}" in message


def test_reachability_is_remembered_for_a_while(monkeypatch, fresh_reachability):
    attempts = []

    def connect(address, timeout):
        attempts.append(address)
        raise OSError("no route")

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example:8443")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    assert availability.hub_reachable() is False and availability.hub_reachable() is False
    assert attempts == [("hub.example", 8443)]


@pytest.mark.parametrize("env, address", [
    ({}, ("huggingface.co", 443)),
    ({"HF_ENDPOINT": "http://mirror.local"}, ("mirror.local", 80)),
    ({"HF_ENDPOINT": "https://mirror.local:9000"}, ("mirror.local", 9000)),
    ({"HTTPS_PROXY": "http://proxy:3128", "HF_ENDPOINT": "https://mirror.local"}, ("proxy", 3128)),
    ({"https_proxy": "http://lower:8080"}, ("lower", 8080)),
])
def test_hub_address_is_where_a_download_connects_first(monkeypatch, env, address):
    for name in ("HF_ENDPOINT", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert availability.hub_address() == address


def test_malformed_spec_raises_model_spec_error():
    with pytest.raises(ModelSpecError, match="closed-form"):
        probe("closed-form:")
