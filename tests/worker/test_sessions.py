"""A closed session's memory comes back: nothing in the worker keeps its history, scenes or masks alive."""

import gc
import weakref

import torch

from engine.scene import random_scene
from engine.worker import EngineWorker
from engine.worker.bus import EventBus
from engine.worker.history import History
from engine.worker.sessions import SessionStore


def test_closing_a_session_releases_its_history():
    store = SessionStore(None, EventBus(), lambda session: (False, False))
    history = History(random_scene(50, seed=1))
    history.push("mask", mask=torch.ones(50))
    store.open("s", history)
    refs = [weakref.ref(history), weakref.ref(history.current.scene)]
    del history
    store.close("s")
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert store.find("s") is None


def test_a_closed_worker_sessions_scene_is_collected(tmp_path):
    worker = EngineWorker(workspace=tmp_path / "ws", device="cpu")
    try:
        scene = random_scene(80, seed=2)
        worker.load_scene("s", scene).result(30)
        worker.set_mask("s", torch.arange(80) < 10).result(30)
        worker.commit_result("s", scene.replace(sh0=scene.sh0 + 0.1), None, label="edit").result(30)
        worker.undo("s").result(30)
        state = worker.current("s").result(30)
        held = weakref.ref(state.scene)
        del state
        worker.close_session("s").result(30)
        gc.collect()
        assert held() is None
        worker.load_scene("t", scene).result(30)  # the worker goes on serving other sessions
    finally:
        worker.shutdown()
