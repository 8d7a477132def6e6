"""The Mask panel's "Select by text" wired through the app: a task on the engine thread that reads the session's
editing model (loaded by the worker's loader thread, like an edit's), lifts with 3D-GALP into a re-cuttable
selection; refused at once, with what to do, for the closed-form prior or a model that is not there. The model is
the tiny random SD-shaped pipeline saved to a folder and loaded through the real loader, so the maps are random:
these tests check the plumbing, tests/masks/test_attention.py the attention and the lifting quality."""

from __future__ import annotations

import time

import pytest
import torch
from gradio_client import Client

from editor.scenes import SceneBundle
from editor.masking import Masking
from engine.masks.evaluation import toy_parts_scene
from tests.editor.apphelpers import running_app, wait_mask_task
from tests.guidance.tiny_models import save_tiny_pipeline


@pytest.fixture(scope="module")
def toy():
    return toy_parts_scene(1500, seed=0)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return str(save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture
def app_session(toy, tmp_path):
    """A session served by a real engine link + EngineWorker (real model loader), and a Masking on that worker."""
    from editor.config import AppConfig
    from editor.page import connect
    from editor.session import SessionRegistry
    from engine.worker import EngineWorker

    scene, ids, names = toy
    registry = SessionRegistry(lambda: SceneBundle(scene, "toy", ids, names), tmp_path)
    worker = EngineWorker(device="cpu")
    masking = Masking()
    ctx = connect(AppConfig(workspace=tmp_path), registry, masking, worker=worker)
    session = registry.get("s")
    session.sam_views = 3
    yield session, masking, ctx, worker
    worker.shutdown()




def test_text_selection_runs_on_the_engine_thread_with_the_sessions_model(app_session, tiny_model_dir, time_limit):
    session, masking, ctx, worker = app_session
    ctx.models.choose(session, tiny_model_dir)
    t = time.monotonic()
    assert masking.select_text(session, "head", "a robot head") == 0  # answers at once: the work is queued
    assert time.monotonic() - t < time_limit(2.0)
    assert session.mask_task.kind == "text selection"
    task, messages = wait_mask_task(session)
    assert task.state == "done", task.message
    assert any("attention" in m for m in messages), messages
    assert tiny_model_dir in worker._models  # loaded by the worker (on its loader thread), cached for edits
    lift = session.lift
    assert lift is not None and lift.weights.shape == (len(session.scene),) and lift.op == "add"
    assert torch.isfinite(lift.weights).all() and 0 <= float(lift.weights.min()) <= float(lift.weights.max()) <= 1
    # the selection is the lift cut at the slider, and re-cuts like a SAM click's
    assert session.selected_count() == int((lift.weights > session.threshold).sum())
    assert masking.set_threshold(session, 0.0) >= masking.set_threshold(session, 0.99)
    # editable with the other tools afterwards
    before = masking.set_threshold(session, 0.5)
    assert masking.invert(session) == len(session.scene) - before


def test_text_selection_within_the_selection_and_subtract(app_session, tiny_model_dir, toy):
    session, masking, ctx, _ = app_session
    scene, ids, names = toy
    ctx.models.choose(session, tiny_model_dir)
    with pytest.raises(ValueError, match="select a rough region first"):
        masking.select_text(session, "head", within_selection=True)
    head = ids == names.index("head")
    with session.lock:
        session.set_selection(head.float(), label="rough")
        session.op = "subtract"
    masking.select_text(session, "head", within_selection=True)
    task, _ = wait_mask_task(session)
    assert task.state == "done", task.message
    # subtracting from the rough region can only remove Gaussians from it
    selected = session.selection > 0.5
    assert not (selected & ~head).any()
    assert int(selected.sum()) == int((head & ~(session.lift.weights > session.threshold)).sum())


def test_closed_form_prior_has_no_attention_and_nothing_is_queued(app_session):
    session, masking, ctx, _ = app_session
    ctx.models.choose(session, "closed-form:#d02020")
    with pytest.raises(ValueError, match="closed-form prior has none"):
        masking.select_text(session, "head")
    assert session.mask_task.state == "idle" and session.lift is None


def test_missing_model_says_what_to_download_before_queueing(app_session, tmp_path, monkeypatch):
    session, masking, ctx, _ = app_session
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx.models.choose(session, "someone/not-a-cached-model")
    with pytest.raises(ValueError, match="download|not downloaded|cannot"):
        masking.select_text(session, "head")
    assert session.mask_task.state == "idle"


def test_bad_part_and_prompt_are_refused(app_session, tiny_model_dir):
    session, masking, ctx, _ = app_session
    ctx.models.choose(session, tiny_model_dir)
    with pytest.raises(ValueError, match="type the part"):
        masking.select_text(session, "  ")
    with pytest.raises(ValueError, match="must contain the part"):
        masking.select_text(session, "scarf", "a robot with a hat")


def test_cancel_while_the_model_loads_changes_nothing(app_session, tiny_model_dir, monkeypatch):
    session, masking, ctx, worker = app_session
    import engine.guidance.loading as loading

    real = loading.load_guidance

    def slow_load(*a, **k):
        time.sleep(1.5)
        return real(*a, **k)

    monkeypatch.setattr(loading, "load_guidance", slow_load)
    ctx.models.choose(session, tiny_model_dir)
    masking.select_text(session, "head")
    deadline = time.monotonic() + 30
    while "loading the model" not in session.mask_task.message and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "loading the model" in session.mask_task.message
    other = worker.load_scene("other", session.scene)  # the task waits aside: the engine keeps serving
    assert other.result(timeout=1.0) == len(session.scene)
    assert session.mask_task.active
    ctx.link.cancel_mask_task(session)
    task, _ = wait_mask_task(session)
    assert task.state == "cancelled" and session.lift is None and session.selected_count() == 0


def test_select_text_endpoint_in_the_app(tmp_path, tiny_model_dir):
    with running_app(tmp_path) as app:
        client = Client(app.url, verbose=False)
        client.predict("closed-form:#d02020", api_name="/set_model")
        with pytest.raises(Exception, match="closed-form prior has none"):
            client.predict("head", "", False, False, api_name="/select_text")
        client.predict(tiny_model_dir, api_name="/set_model")
        info = client.predict("blob", "", False, False, api_name="/select_text")
        assert "text selection" in info or "selected" in info
        (session,) = app.ctx.registry.sessions()
        task, _ = wait_mask_task(session)
        assert task.state == "done", task.message
        assert session.lift is not None and session.lift.weights.shape == (len(session.scene),)
