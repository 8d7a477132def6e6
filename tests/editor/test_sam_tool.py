"""The SAM click tool wired through the app: click -> a task on the engine thread (multi-view SAM with progress,
lifting by vote / 3D-GALP) -> the session's selection, re-cut by the threshold. SAM itself is replaced by a
segmenter that is right by construction (the colour region under the prompt), so the test checks the app's
plumbing, not SAM."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from editor.scenes import SceneBundle
from editor.gestures import click_from_pixel
from editor.masking import Masking
from editor.session import Session
from engine.masks.evaluation import toy_parts_scene
from tests.editor.apphelpers import wait_mask_task


class ColourRegion:
    """Stand-in for engine.masks.sam.SamSegmenter: the connected pixels coloured like the prompt pixel."""

    def __init__(self, tolerance: float = 60.0) -> None:
        self.tolerance, self.calls = tolerance, 0

    def segment(self, image, *, points=None, **_):
        from engine.masks.sam import SamMask

        self.calls += 1
        x, y = (int(v) for v in np.asarray(points, dtype=float).reshape(-1, 2)[0])
        close = np.abs(image.astype(float) - image[y, x].astype(float)).sum(-1) < self.tolerance
        labels, _ = ndimage.label(close)
        return SamMask(labels == labels[y, x], 1.0)


@pytest.fixture(scope="module")
def toy():
    scene, ids, names = toy_parts_scene(1500, seed=0)
    return scene, ids, names


@pytest.fixture
def app_session(toy, tmp_path):
    """A session served by a real engine link + EngineWorker, with a Masking whose tasks run on that worker."""
    from editor.config import AppConfig
    from editor.page import connect
    from editor.session import SessionRegistry
    from engine.worker import EngineWorker

    scene, ids, names = toy
    registry = SessionRegistry(lambda: SceneBundle(scene, "toy", ids, names), tmp_path)
    worker = EngineWorker(device="cpu")
    segmenter = ColourRegion()
    masking = Masking(segmenter=segmenter)
    ctx = connect(AppConfig(workspace=tmp_path), registry, masking, worker=worker)
    session = registry.get("s")
    yield session, masking, segmenter, ctx
    worker.shutdown()




@pytest.mark.parametrize("method", ["vote", "galp"])
def test_sam_click_selects_the_clicked_part(toy, app_session, method, time_limit):
    scene, ids, names = toy
    session, masking, segmenter, _ = app_session
    session.tool, session.lift_method, session.sam_views = "sam", method, 6
    camera = session.view.cameras(160, 120)
    head = ids == names.index("head")
    # Click the pixel where the head's centre projects.
    centre = scene.means[head].mean(0)
    p = camera.viewmats[0] @ torch.cat([centre, torch.ones(1)])
    u, v = ((camera.Ks[0] @ p[:3]) / p[2])[:2].tolist()
    t = time.monotonic()
    assert masking.apply_click(session, click_from_pixel(camera, u, v)) == 0  # answers at once: work is queued
    assert time.monotonic() - t < time_limit(1.0)
    task, messages = wait_mask_task(session)
    assert task.state == "done", task.message
    assert any("views segmented" in m for m in messages) and any("lifting" in m for m in messages)
    assert segmenter.calls >= 2  # the clicked view and orbit views around the point
    selected = session.selection > 0.5
    iou = float((selected & head).sum()) / float((selected | head).sum())
    assert iou > 0.6, iou
    assert session.lift is not None and session.threshold == 0.5
    count = session.selected_count()
    # The threshold slider re-cuts the same soft weights: everything at 0, less at 0.99.
    assert masking.set_threshold(session, 0.0) >= count >= masking.set_threshold(session, 0.99)


def test_sam_click_can_be_cancelled_and_changes_nothing(toy, app_session):
    scene, ids, names = toy
    session, masking, segmenter, ctx = app_session
    session.tool, session.sam_views = "sam", 6
    slow = segmenter.segment

    def slow_segment(*a, **k):
        time.sleep(0.3)
        return slow(*a, **k)

    segmenter.segment = slow_segment
    camera = session.view.cameras(160, 120)
    centre = scene.means.mean(0)
    p = camera.viewmats[0] @ torch.cat([centre, torch.ones(1)])
    u, v = ((camera.Ks[0] @ p[:3]) / p[2])[:2].tolist()
    masking.apply_click(session, click_from_pixel(camera, u, v))
    deadline = time.monotonic() + 60
    while session.mask_task.state != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    ctx.link.cancel_mask_task(session)
    task, _ = wait_mask_task(session)
    assert task.state == "cancelled" and session.selected_count() == 0 and session.lift is None


def test_sam_without_a_checkpoint_says_what_to_download(toy, tmp_path):
    scene, ids, names = toy
    session = Session("s", SceneBundle(scene, "toy", ids, names), tmp_path)
    session.tool = "sam"
    with pytest.raises(ValueError, match="sam_vit_b_01ec64.pth.*--sam-checkpoint"):
        Masking().apply_click(session, click_from_pixel(session.view.cameras(64, 48), 32, 24))
    with pytest.raises(ValueError, match="does not exist"):
        Masking(str(Path(tmp_path) / "missing.pth")).sam.get()
