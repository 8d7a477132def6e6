"""The editor's up axis: detected when a scene opens, set in the Scene panel, used by the streamed view, edits,
the web-viewer copy and .ply exports, and brought back with a restored session."""

from __future__ import annotations

import numpy as np
import torch

from editor import drawing, scenes
from editor.config import AppConfig
from editor.page import connect
from editor.settings import (EditSettings, GenerateSettings, INIT_CURRENT, checked_edit_config,
                             checked_generate_config)
from editor.session import SessionRegistry
from engine.io import save
from engine.io.detect_up import detect_up
from engine.rotate import turn_scene
from tests.editor.apphelpers import small_scene


def test_bundles_carry_the_detected_up(tmp_path):
    robot = scenes.default_scene()
    assert robot.up == (0.0, 0.0, 1.0) and robot.up_source == "file"
    save(small_scene(50), tmp_path / "capture.ply")
    capture = scenes.open_scene(tmp_path / "capture.ply")
    assert capture.up == (0.0, -1.0, 0.0) and capture.up_source == "format"
    info = scenes.scene_info(capture)
    assert info["up"] == "-y" and info["up_source"] == "format"


def test_the_streamed_view_of_a_turned_scene_is_the_same_picture(tmp_path):
    """The robot turned to -y up and opened with its detected up looks exactly like the original."""
    from editor.session import Session

    robot = scenes.default_scene()
    turned = scenes.SceneBundle(turn_scene(robot.scene, (0, 0, 1), (0, -1, 0)), "turned", up=(0.0, -1.0, 0.0))
    a, b = Session("a", robot, tmp_path / "a"), Session("b", turned, tmp_path / "b")
    assert a.view.up == (0.0, 0.0, 1.0) and b.view.up == (0.0, -1.0, 0.0)
    image_a = drawing.render_view(a.scene, a.view.cameras(48, 48)).astype(int)
    image_b = drawing.render_view(b.scene, b.view.cameras(48, 48)).astype(int)
    assert np.abs(image_a - image_b).max() <= 3
    b.show_state(b.scene, b.selection, b.parts, up=(0.0, 0.0, 1.0), up_source="user")  # the user says otherwise
    assert b.up == (0.0, 0.0, 1.0) and b.bundle.up_source == "user" and b.view.up == (0.0, 0.0, 1.0)
    assert np.abs(drawing.render_view(b.scene, b.view.cameras(48, 48)).astype(int) - image_a).mean() > 5


def test_edits_exports_and_restores_use_the_sessions_up(tmp_path):
    scene = small_scene(80)
    config = AppConfig(viser_port=0, workspace=tmp_path)
    registry = SessionRegistry(lambda: scenes.SceneBundle(scene, "small", up=(0.0, -1.0, 0.0)), tmp_path)
    ctx = connect(config, registry)
    try:
        session = registry.get("s")
        assert session.up == (0.0, -1.0, 0.0)
        session.set_selection(torch.ones(len(scene)), label="all")
        ctx.models.choose(session, "closed-form:#00ff00")
        edit = checked_edit_config(session, EditSettings(prompt="red", steps=2, resolution=32), ctx.models)
        assert tuple(edit.up) == (0.0, -1.0, 0.0)
        assert tuple(checked_generate_config(session, GenerateSettings(prompt="a mug", init=INIT_CURRENT,
                                                                       model="closed-form:red"), ctx.models).up) == session.up
        assert tuple(checked_generate_config(session, GenerateSettings(
            prompt="a mug", model="closed-form:red"), ctx.models).up) == (0.0, 0.0, 1.0)  # primitives are +z up

        ctx.link.set_up(session, (1.0, 0.0, 0.0))
        out = ctx.link.export(session, tmp_path / "exports" / "scene.ply")
        assert detect_up(out).up == (1.0, 0.0, 0.0) and detect_up(out).source == "file"

        other = registry.get("t")
        ctx.link.restore(other, "s")
        assert other.up == (1.0, 0.0, 0.0) and other.view.up == (1.0, 0.0, 0.0)
    finally:
        registry.close_all()
        ctx.link.worker.shutdown(timeout=10)
