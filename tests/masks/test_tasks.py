"""The editor's mask tasks as engine functions: they run the same pipeline a caller would, report progress,
load SAM once, and end a cancelled text selection the way the worker expects (through `progress`)."""

import pytest
import torch

import engine.masks.tasks as tasks
from engine.masks.attention import NO_ATTENTION, Stopped
from engine.masks.evaluation import toy_parts_scene
from engine.masks.lift_vote import vote
from engine.masks.multiview import MultiViewConfig, scene_camera, segment_click
from engine.masks.sam import SamError, SamLoader
from engine.worker import TaskCancelled

from conftest import ColourSegmenter


@pytest.fixture(scope="module")
def flat_toy():
    """The toy figure with flat part colours, so the colour segmenter is a perfect 'SAM'."""
    return toy_parts_scene(1500, colour_noise=0.0, seed=1)


def _head_click(scene):
    cam = scene_camera(scene, 30.0, 15.0, width=96, height=96)
    p = cam.viewmats[0, :3, :3] @ torch.tensor([0.0, 0.0, 0.6]) + cam.viewmats[0, :3, 3]
    uv = cam.Ks[0] @ (p / p[2])
    return cam, (float(uv[0]), float(uv[1]))


def test_sam_click_task_lifts_the_click_pipeline(flat_toy):
    scene, ids, names = flat_toy
    cam, (x, y) = _head_click(scene)
    messages = []
    weights = tasks.lift_sam_click(scene, cam, (x, y), SamLoader(segmenter=ColourSegmenter()),
                                   lambda step, total, message: messages.append(message), lambda: False,
                                   method="vote", num_views=4, up=(0.0, 0.0, 1.0))
    views = segment_click(scene, ColourSegmenter(), cam, x, y, MultiViewConfig(num_views=4))
    torch.testing.assert_close(weights, vote(scene, views.views).weights[0].float())
    assert weights.dtype == torch.float32 and weights.device.type == "cpu" and weights.shape == (len(scene),)
    head = ids == names.index("head")
    selected = weights > 0.5
    assert float((selected & head).sum()) / float((selected | head).sum()) > 0.6
    assert "loading SAM" not in messages  # the loader already held a segmenter
    assert any("views segmented" in m for m in messages)
    assert messages[-1] == f"lifting {1 + len(views.kept)} views to 3D (voting)"


def test_sam_loader_loads_once_on_first_use(flat_toy, tiny_sam, tmp_path):
    path, config = tiny_sam
    loader = SamLoader(path, config=config)
    assert loader.available and not loader.loaded
    scene, _, _ = flat_toy
    cam, (x, y) = _head_click(scene)
    messages = []
    weights = tasks.lift_sam_click(scene, cam, (x, y), loader, lambda s, t, m: messages.append(m), lambda: False,
                                   num_views=2)
    assert messages[0] == "loading SAM" and loader.loaded and weights.shape == (len(scene),)
    assert loader.get() is loader.get()
    assert not SamLoader().available
    with pytest.raises(SamError, match="does not exist"):
        SamLoader().get()
    with pytest.raises(SamError, match="does not exist"):
        SamLoader(tmp_path / "sam_vit_b_missing.pth").get()


def test_a_cancelled_text_selection_ends_through_progress(monkeypatch):
    """select_by_text stops with Stopped when should_stop() says so; the task turns that into the worker's
    cancellation (progress raises TaskCancelled once cancelled) instead of an error."""
    cancelled = []

    def progress(step, total, message=""):  # the worker's progress, in short
        if cancelled:
            raise TaskCancelled()

    def cancelled_midway(scene, model, part, *, should_stop, **_):
        cancelled.append(True)
        assert should_stop()
        raise Stopped("text selection cancelled")

    monkeypatch.setattr(tasks, "select_by_text", cancelled_midway)
    scene, _, _ = toy_parts_scene(50, seed=0)
    with pytest.raises(TaskCancelled):
        tasks.lift_text_selection(scene, "head", progress, lambda: bool(cancelled), model=None)
    cancelled.clear()  # outside the worker (a progress that never raises), Stopped itself comes out
    with pytest.raises(Stopped):
        tasks.lift_text_selection(scene, "head", lambda *a: None, lambda: bool(cancelled), model=None)


def test_text_selection_refuses_a_model_without_attention():
    assert tasks.text_selection_refusal("closed-form:#d02020") == NO_ATTENTION
    assert tasks.text_selection_refusal("some-owner/some-model") is None
