"""Sessions: each page's own scene/mask, per-session Viser servers (clicks edit only their session), idle reaping,
viewer limit; the selection tools' bookkeeping (add/subtract, invert, parts, lifted-mask threshold, files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editor.scenes import SceneBundle
from editor.config import AppConfig
from editor.page import _viewer_factory
from editor.masking import Masking, combine
from editor.session import LiftState, SessionRegistry
from tests.editor.apphelpers import small_scene
from tests.editor.test_viewer import EYE, LOOK_Y_WXYZ
from tests.editor.viser_client import ViserTestClient


def _bundle(n: int = 200) -> SceneBundle:
    scene = small_scene(n)
    part_ids = (scene.means[:, 0] > 0).long()  # two "parts": left and right halves
    return SceneBundle(scene, "test", part_ids, ["left", "right"])


@pytest.fixture
def registry(tmp_path):
    reg = SessionRegistry(_bundle, tmp_path, ttl_s=10.0, max_viewers=2)
    yield reg
    reg.close_all()


def test_sessions_are_separate_and_share_the_default_scene(registry):
    a, b = registry.get("a"), registry.get("b")
    assert a is registry.get("a") and a is not b
    assert a.scene is b.scene  # immutable, read once
    a.set_selection(torch.ones(len(a.scene)))
    assert int(b.selection.sum()) == 0
    assert set(a.parts) == {"left", "right"}
    with pytest.raises(ValueError, match="session"):
        registry.get("")


def test_idle_sessions_are_reaped_but_not_while_editing(registry):
    a, b = registry.get("a"), registry.get("b")
    b.job.state = "running"
    reaped = registry.reap_idle(now=a.last_seen + 11)
    assert reaped == ["a"] and [s.id for s in registry.sessions()] == ["b"]


def test_each_session_gets_its_own_viser_server_and_clicks_stay_there(tmp_path):
    masking = Masking()
    registry = SessionRegistry(_bundle, tmp_path, max_viewers=2,
                               viewer_factory=_viewer_factory(AppConfig(viser_port=0), masking))
    try:
        a, b, c = registry.get("a"), registry.get("b"), registry.get("c")
        va, vb = registry.ensure_viewer(a), registry.ensure_viewer(b)
        assert va.port != vb.port and registry.ensure_viewer(a) is va
        assert registry.ensure_viewer(c) is None  # over the limit: that page gets the streamed view only
        a.brush_radius, a.tool = 400.0, "brush"  # a brush covering the whole view
        ca, cb = ViserTestClient(va.port), ViserTestClient(vb.port)
        try:
            for client in (ca, cb):
                client.send_camera(LOOK_Y_WXYZ, EYE, fov=0.8, width=160, height=120)
            ca.wait_for(lambda: va.server.get_clients() and vb.server.get_clients())
            ca.click(EYE, (0.0, 1.0, 0.0), (0.5, 0.5))
            ca.wait_for(lambda: a.selected_count() > 0, timeout=30)
            assert b.selected_count() == 0 and c.selected_count() == 0
            # b's viewer keeps showing b's (untinted) scene
            assert vb._mask is None
        finally:
            ca.close(), cb.close()
        registry.close("a")
        assert a.viewer is None
        assert registry.ensure_viewer(c) is not None  # the freed slot goes to the next page
    finally:
        registry.close_all()


def test_combine_and_whole_mask_operations(registry):
    s = registry.get("m")
    masking = Masking()
    n = len(s.scene)
    assert torch.equal(combine(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([1.0, 0.0, 1.0]), "add"),
                       torch.tensor([1.0, 1.0, 1.0]))
    assert torch.equal(combine(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([1.0, 0.0, 1.0]), "subtract"),
                       torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError):
        combine(torch.zeros(1), torch.zeros(1), "xor")
    assert masking.select_part(s, "left") == int((s.bundle.part_ids == 0).sum())
    left = s.selection.clone()
    assert masking.invert(s) == n - int(left.sum())
    assert masking.select_part(s, "left", "add") == n
    assert masking.clear(s) == 0
    grown_from = torch.zeros(n)
    grown_from[0] = 1
    s.set_selection(grown_from)
    grown = masking.grow(s)
    assert grown > 1 and s.selection[0] == 1
    assert masking.shrink(s) <= grown


def test_parts_save_select_delete_and_hide(registry):
    s = registry.get("p")
    masking = Masking()
    with pytest.raises(ValueError, match="nothing is selected"):
        masking.save_part(s, "hat")
    masking.select_part(s, "right")
    assert masking.save_part(s, "hat") == ["left", "right", "hat"]
    with pytest.raises(ValueError, match="name"):
        masking.save_part(s, "  ")
    masking.set_shown_parts(s, ["left", "hat"])
    shown = s.display_scene()
    hidden = s.parts["right"] > 0.5
    assert torch.all(shown.activated_opacities()[hidden] < 1e-6)
    assert torch.equal(shown.opacities[~hidden], s.scene.opacities[~hidden])
    assert masking.delete_part(s, "hat") == ["left", "right"]


def test_threshold_recuts_the_lifted_mask(registry):
    s = registry.get("t")
    masking = Masking()
    n = len(s.scene)
    weights = torch.linspace(0, 1, n)
    s.lift = LiftState(weights=weights, base=torch.zeros(n), op="add")
    assert masking.set_threshold(s, 0.5) == int((weights > 0.5).sum())
    assert masking.set_threshold(s, 0.9, live=True) == int((weights > 0.9).sum())
    assert s.lift is not None  # re-cutting keeps the lift to cut again


def test_mask_files_round_trip_and_errors(registry, tmp_path):
    s = registry.get("f")
    masking = Masking()
    masking.select_part(s, "left")
    path = masking.save_mask(s, tmp_path / "m.npy")
    masking.clear(s)
    assert masking.load_mask(s, path) == int((s.bundle.part_ids == 0).sum())
    np.save(tmp_path / "short.npy", np.ones(3))
    with pytest.raises(ValueError, match="short.npy"):
        masking.load_mask(s, tmp_path / "short.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy"):
        masking.load_mask(s, tmp_path / "junk.npy")


def test_mask_is_frozen_while_an_edit_runs(registry):
    s = registry.get("e")
    s.job.state = "running"
    with pytest.raises(ValueError, match="edit is running"):
        Masking().invert(s)
    s.job.state = "done"
    Masking().invert(s)
