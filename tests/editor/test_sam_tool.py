"""The SAM click tool wired through the app: click -> multi-view SAM -> lifting (vote / 3D-GALP) -> the
session's selection, re-cut by the threshold. SAM itself is replaced by a segmenter that is right by
construction (the colour region under the prompt), so the test checks the app's plumbing, not SAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from editor.backend import SceneBundle
from editor.gestures import click_from_pixel
from editor.masking import Masking
from editor.session import Session
from engine.masks.evaluation import toy_parts_scene


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


@pytest.mark.parametrize("method", ["vote", "galp"])
def test_sam_click_selects_the_clicked_part(toy, method, tmp_path):
    scene, ids, names = toy
    session = Session("s", SceneBundle(scene, "toy", ids, names), tmp_path)
    session.tool, session.lift_method, session.sam_views = "sam", method, 6
    segmenter = ColourRegion()
    masking = Masking(segmenter=segmenter)
    camera = session.view.cameras(160, 120)
    head = ids == names.index("head")
    # Click the pixel where the head's centre projects.
    centre = scene.means[head].mean(0)
    p = camera.viewmats[0] @ torch.cat([centre, torch.ones(1)])
    u, v = ((camera.Ks[0] @ p[:3]) / p[2])[:2].tolist()
    count = masking.apply_click(session, click_from_pixel(camera, u, v))
    assert segmenter.calls >= 2  # the clicked view and orbit views around the point
    selected = session.selection > 0.5
    iou = float((selected & head).sum()) / float((selected | head).sum())
    assert count == int(selected.sum()) and iou > 0.6, iou
    assert session.lift is not None
    # The threshold slider re-cuts the same soft weights: everything at 0, less at 0.99.
    assert masking.set_threshold(session, 0.0) >= count >= masking.set_threshold(session, 0.99)


def test_sam_without_a_checkpoint_says_what_to_download(toy, tmp_path):
    scene, ids, names = toy
    session = Session("s", SceneBundle(scene, "toy", ids, names), tmp_path)
    session.tool = "sam"
    with pytest.raises(ValueError, match="sam_vit_b_01ec64.pth.*--sam-checkpoint"):
        Masking().apply_click(session, click_from_pixel(session.view.cameras(64, 48), 32, 24))
    with pytest.raises(ValueError, match="does not exist"):
        Masking(str(Path(tmp_path) / "missing.pth")).segmenter()
