"""The Viser view against a real in-process ViserServer and a client that speaks Viser's wire protocol."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from editor import drawing
from editor.gestures import click_from_pixel
from editor.viewer import SessionViewer
from engine.scene import random_scene
from tests.editor.viser_client import ViserTestClient, splat_buffer

# A camera 3 units in front of the origin looking along +y (OpenCV axes: x right, y down, z forward).
# R_world_camera columns are the camera axes in world coordinates: x -> +x, y -> -z, z -> +y.
LOOK_Y_WXYZ = (np.cos(-np.pi / 4), np.sin(-np.pi / 4), 0.0, 0.0)
EYE = (0.0, -3.0, 0.0)


@pytest.fixture
def viewer_and_client():
    clicks, rects = [], []
    viewer = SessionViewer(port=0, on_click=clicks.append, on_rect=rects.append)
    client = ViserTestClient(viewer.port)
    yield viewer, client, clicks, rects
    client.close()
    viewer.close()


def _latest_buffer(client: ViserTestClient, n: int) -> np.ndarray:
    """The newest splat buffer with n rows the client received (creation or in-place update)."""
    def find():
        for m in reversed(list(client.messages)):
            if m.get("type") == "GaussianSplatsMessage" or (
                m.get("type") == "SceneNodeUpdateMessage" and "buffer" in (m.get("updates") or {})
            ):
                buf = splat_buffer(m)
                if buf.shape[0] == n:
                    return buf
        return None

    return client.wait_for(find)


def test_scene_reaches_the_client_as_splats(viewer_and_client):
    viewer, client, _, _ = viewer_and_client
    scene = random_scene(40, seed=3)
    viewer.show(scene)
    buf = _latest_buffer(client, 40)
    centers = buf[:, 0:3].copy().view(np.float32)
    np.testing.assert_allclose(centers, scene.means.numpy(), rtol=0, atol=1e-6)
    rgba = buf[:, 7:8].copy().view(np.uint8).reshape(-1, 4)
    expected = (scene.base_colors().clamp(0, 1).numpy() * 255).round()
    assert np.abs(rgba[:, :3].astype(float) - expected).max() <= 1.0


def test_mask_tint_updates_in_place_and_toggles(viewer_and_client):
    viewer, client, _, _ = viewer_and_client
    scene = random_scene(30, seed=1)
    viewer.show(scene)
    _latest_buffer(client, 30)
    mask = torch.zeros(30)
    mask[:10] = 1.0
    created_before = len(client.of_type("GaussianSplatsMessage"))
    viewer.show(scene, mask)

    def tinted():
        buf = _latest_buffer(client, 30)
        rgba = buf[:, 7:8].copy().view(np.uint8).reshape(-1, 4)
        want = drawing.display_colors(scene, mask).numpy() * 255
        return rgba if np.abs(rgba[:, :3] - want).max() <= 1.0 else None

    rgba = client.wait_for(tinted)
    plain = (scene.base_colors().numpy() * 255)
    assert np.abs(rgba[:10, :3] - plain[:10]).max() > 5  # masked ones changed colour
    assert np.abs(rgba[10:, :3] - plain[10:]).max() <= 1.0  # the rest did not
    # Same count: updated in place, no new scene node.
    assert len(client.of_type("GaussianSplatsMessage")) == created_before

    client.set_gui_value(viewer.tint_checkbox, False)  # the user unticks "Mask tint"

    def untinted():
        buf = _latest_buffer(client, 30)
        rgba = buf[:, 7:8].copy().view(np.uint8).reshape(-1, 4)
        return np.abs(rgba[:, :3] - plain).max() <= 1.0

    client.wait_for(untinted)


def test_click_arrives_with_the_clients_camera(viewer_and_client):
    viewer, client, clicks, _ = viewer_and_client
    viewer.show(random_scene(10, seed=0))
    client.send_camera(LOOK_Y_WXYZ, EYE, fov=0.8, width=400, height=300)
    client.click(EYE, (0.0, 1.0, 0.0), (0.25, 0.5))
    client.wait_for(lambda: clicks)
    click = clicks[0]
    assert (click.camera.width, click.camera.height) == (400, 300)
    assert click.pixel == pytest.approx((100.0, 150.0))
    # The world origin is straight ahead: it must project to the image centre with this camera.
    p = click.camera.viewmats[0] @ torch.tensor([0.0, 0.0, 0.0, 1.0])
    uv = (click.camera.Ks[0] @ p[:3]) / p[2]
    assert uv[:2].tolist() == pytest.approx([200.0, 150.0], abs=1e-3)
    assert float(p[2]) == pytest.approx(3.0, abs=1e-5)


def test_rectangle_only_while_rect_mode(viewer_and_client):
    viewer, client, _, rects = viewer_and_client
    client.send_camera(LOOK_Y_WXYZ, EYE, width=200, height=100)
    client.wait_for(lambda: viewer.server.get_clients())
    viewer.set_rect_mode(True)
    client.rect((0.5, 0.1), (0.1, 0.9))  # corners in any order
    client.wait_for(lambda: rects)
    assert rects[0].pixel_min == pytest.approx((20.0, 10.0))
    assert rects[0].pixel_max == pytest.approx((100.0, 90.0))
    viewer.set_rect_mode(False)

    def enables():
        return [m for m in client.of_type("ScenePointerEnableMessage") if m["event_type"] == "rect-select"]

    client.wait_for(enables)  # the test client may send its drag before the enable message has arrived
    assert list(enables()[0]["modifiers"]) == [None]  # enabled for plain drags...
    client.wait_for(lambda: list(enables()[-1]["modifiers"]) == [])  # ...then off again: drags orbit


def test_server_render_low_then_full_resolution(viewer_and_client):
    viewer, client, _, _ = viewer_and_client
    scene = random_scene(60, seed=2, extent=0.5)
    drawing.render_view(scene, drawing.camera_from_pose(LOOK_Y_WXYZ, EYE, 0.8, 40, 30))  # warm the renderer up
    viewer.show(scene)
    client.send_camera(LOOK_Y_WXYZ, EYE, fov=0.8, width=160, height=120)
    client.wait_for(lambda: viewer.server.get_clients())
    client.set_gui_value(viewer.render_checkbox, True)  # the user ticks "Server render"

    def backgrounds():
        sizes = []
        for m in client.of_type("BackgroundImageMessage"):
            if m.get("rgb_data"):
                sizes.append(Image.open(io.BytesIO(m["rgb_data"])).size)
        return sizes if (160, 120) in sizes else None

    sizes = client.wait_for(backgrounds, timeout=30)
    assert (40, 30) in sizes  # the quick low-resolution render came first
    assert sizes.index((40, 30)) < sizes.index((160, 120))
    # While server renders are shown, the client splats are hidden so the render is what one sees.
    vis = [m for m in client.of_type("SetSceneNodeVisibilityMessage") if m["name"] == "/scene_0"]
    assert vis and vis[-1]["visible"] is False


def test_two_viewers_are_isolated():
    """Each session has its own server: a click in one reaches only that one, scenes never mix."""
    clicks_a, clicks_b = [], []
    a = SessionViewer(port=0, on_click=clicks_a.append)
    b = SessionViewer(port=0, on_click=clicks_b.append)
    assert a.port != b.port
    ca, cb = ViserTestClient(a.port), ViserTestClient(b.port)
    try:
        a.show(random_scene(11, seed=0))
        b.show(random_scene(22, seed=1))
        _latest_buffer(ca, 11)
        _latest_buffer(cb, 22)
        ca.send_camera(LOOK_Y_WXYZ, EYE)
        ca.click(EYE, (0.0, 1.0, 0.0), (0.5, 0.5))
        ca.wait_for(lambda: clicks_a)
        assert clicks_b == []
        assert all(splat_buffer(m).shape[0] == 22 for m in cb.of_type("GaussianSplatsMessage"))
        assert all(splat_buffer(m).shape[0] == 11 for m in ca.of_type("GaussianSplatsMessage"))
    finally:
        ca.close(), cb.close(), a.close(), b.close()


def test_click_ray_and_camera_agree():
    """click_from_pixel's ray passes through the pixel it came from (round trip through the camera)."""
    camera = drawing.camera_from_pose(LOOK_Y_WXYZ, EYE, 0.8, 320, 240)
    click = click_from_pixel(camera, 70.0, 200.0)
    point = click.ray_origin + 2.5 * click.ray_direction
    p = camera.viewmats[0].double() @ torch.tensor([*point, 1.0], dtype=torch.float64)
    uv = (camera.Ks[0].double() @ p[:3]) / p[2]
    assert uv[:2].tolist() == pytest.approx([70.0, 200.0], abs=1e-4)
    np.testing.assert_allclose(click.ray_origin, EYE, atol=1e-6)
