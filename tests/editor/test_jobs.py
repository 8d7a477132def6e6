"""The local runner + engine worker + Viser viewer: while an edit runs, the session's Viser view receives the scene in
place (splat buffer updates, same node) and server renders of it; afterwards the result is adopted and the
history grows by one entry."""

from __future__ import annotations

import time

import numpy as np
import torch

from editor.scenes import SceneBundle
from editor.config import AppConfig
from editor.page import connect
from editor.settings import EditSettings
from editor.page import _viewer_factory
from editor.masking import Masking
from editor.session import SessionRegistry
from tests.editor.apphelpers import small_scene
from tests.editor.test_viewer import EYE, LOOK_Y_WXYZ
from tests.editor.viser_client import ViserTestClient, splat_buffer


def _wait(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def test_viewer_updates_in_place_during_an_edit(tmp_path):
    scene = small_scene(300)
    config = AppConfig(viser_port=0, workspace=tmp_path)
    registry = SessionRegistry(lambda: SceneBundle(scene, "small"), tmp_path, viewer_factory=_viewer_factory(
        config, Masking()))
    ctx = connect(config, registry)
    try:
        session = registry.get("s")
        viewer = registry.ensure_viewer(session)
        client = ViserTestClient(viewer.port)
        client.send_camera(LOOK_Y_WXYZ, EYE, fov=0.8, width=96, height=72)
        client.wait_for(lambda: viewer.server.get_clients())
        mask = torch.zeros(len(scene))
        mask[: len(scene) // 3] = 1.0
        session.set_selection(mask, label="test")
        ctx.models.choose(session, "closed-form:#00ff00")
        client.wait_for(lambda: client.of_type("GaussianSplatsMessage"))  # the initial splats have arrived
        created = len(client.of_type("GaussianSplatsMessage"))
        updates_before = len(client.of_type("SceneNodeUpdateMessage"))
        ctx.runner.start_edit(session, EditSettings(prompt="green", steps=12, resolution=32, preview_every=1, densify=False,
                                         lr_scale=5.0))
        _wait(lambda: session.job.state in ("done", "error", "cancelled"))
        assert session.job.state == "done", session.job.message
        # In-place: buffer updates of the same node, no new node per preview.
        buffers = [m for m in client.of_type("SceneNodeUpdateMessage") if "buffer" in (m.get("updates") or {})]
        assert len(buffers) - updates_before >= 3
        assert len(client.of_type("GaussianSplatsMessage")) == created
        # Exact renders of the scene in progress were shown while it ran (view-dependent colour).
        assert any(m.get("rgb_data") for m in client.of_type("BackgroundImageMessage"))
        assert viewer.stats["renders_low"] + viewer.stats["renders_full"] >= 1
        # The result is adopted: the masked third turned toward green, the rest is bit-identical.
        edited = session.scene
        assert not torch.equal(edited.sh0[: len(scene) // 3], scene.sh0[: len(scene) // 3])
        assert torch.equal(edited.sh0[len(scene) // 3:], scene.sh0[len(scene) // 3:])
        assert session.history_labels[-1].startswith("edit (sds): green")
        # And the view ends on the adopted result, tinted by its mask.
        from editor.drawing import display_colors

        want = display_colors(edited, session.display_mask()).numpy() * 255

        def shows_result():
            updates = [m for m in client.of_type("SceneNodeUpdateMessage") if "buffer" in (m.get("updates") or {})]
            rgba = splat_buffer(updates[-1])[:, 7:8].copy().view(np.uint8).reshape(-1, 4)
            return np.abs(rgba[:, :3] - want).max() <= 1.0

        client.wait_for(shows_result)
        client.close()
    finally:
        registry.close_all()
        ctx.link.worker.shutdown(timeout=10)
