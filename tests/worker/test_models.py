"""ModelCache: one load per spec on a loader thread, parking while it loads, errors reported once."""

import threading

import pytest

from engine.worker.models import ModelCache, Parked


def test_a_model_loads_once_on_a_loader_thread_while_callers_park():
    release, loads, loaded = threading.Event(), [], []

    def loader(spec, device=None):
        loads.append((spec, threading.current_thread().name, str(device)))
        release.wait(30)
        return f"model {spec}"

    cache = ModelCache(device="cpu", loader=loader, on_loaded=lambda spec: loaded.append((spec, cache.settled(spec))))
    for _ in range(3):  # asked again while loading: no second load
        with pytest.raises(Parked) as parked:
            cache.get_or_park("a")
        assert parked.value.spec == "a"
    assert "a" not in cache and not cache.settled("a")
    release.set()
    assert cache.get("a", timeout=30) == "model a"
    assert loaded == [("a", True)]  # the hook fires once the outcome is recorded
    assert cache.get_or_park("a") == "model a" and "a" in cache
    assert [spec for spec, _, _ in loads] == ["a"] and loads[0][1] != threading.current_thread().name
    assert loads[0][2] == "cpu"


def test_a_failed_load_is_raised_once_then_tried_again():
    attempts = []

    def loader(spec, device=None):
        attempts.append(spec)
        if len(attempts) == 1:
            raise OSError("offline")
        return "model"

    cache = ModelCache(device="cpu", loader=loader)
    with pytest.raises(OSError, match="offline"):
        cache.get("m", timeout=30)
    assert "m" not in cache and not cache.settled("m")  # reported: forgotten
    assert cache.get("m", timeout=30) == "model" and attempts == ["m", "m"]


def test_get_gives_up_after_its_timeout_and_no_spec_means_the_default_model():
    never = threading.Event()
    cache = ModelCache(device="cpu", loader=lambda spec, device=None: never.wait(30))
    with pytest.raises(TimeoutError, match="did not load"):
        cache.get("slow", timeout=0.2)
    never.set()
    from engine.guidance import default_model_spec

    assert ModelCache.resolve(None) == ModelCache.resolve("") == default_model_spec()
    assert ModelCache.resolve("closed-form:red") == "closed-form:red"
