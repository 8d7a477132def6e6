"""editor.drawing.TintedViews: a mask change from the same view re-coloured from the kept compositing map
gives the image a full tinted render gives."""

from __future__ import annotations

import time

import torch

from editor import drawing
from editor.orbit import OrbitView
from tests.editor.apphelpers import small_scene


def test_recoloured_view_matches_the_tinted_render_and_only_for_its_scene_and_camera(one_torch_thread):
    scene = small_scene(300, seed=4)
    lo, hi = scene.bounding_box()
    view = OrbitView.framing(lo, hi)
    camera = view.cameras(96, 72)
    mask = torch.zeros(len(scene))
    mask[:120] = 1.0
    tinted = drawing.TintedViews()
    assert tinted.image(scene, camera, mask) is None  # nothing kept yet
    tinted.prepare(scene, camera)
    deadline = time.monotonic() + 60
    while tinted.image(scene, camera, mask) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for weights in (mask, torch.rand(len(scene))):
        fast = tinted.image(scene, camera, weights).astype(int)
        full = drawing.render_view(scene, camera, mask=weights, tint=True).astype(int)
        assert abs(fast - full).max() <= 2
    assert tinted.image(scene, view.rotated(20).cameras(96, 72), mask) is None
    assert tinted.image(scene.clone(), camera, mask) is None
