"""A scene turned to another up axis, orbited around that up, looks exactly like the original: the bundled robot
turned from +z up to -y up (the 3DGS capture convention), and a real -y-up capture turned to +z."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.camera import framing_radius, orbit_cameras
from engine.io import load
from engine.render import render
from engine.rotate import turn_scene
from engine.up import rotation_between

SAMPLE = Path(__file__).resolve().parent / "io" / "data" / "supersplat-64.compressed.ply"
AZIMUTHS, ELEVATIONS = [30.0, 150.0, 260.0], [20.0, -10.0, 60.0]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def orbit_views(scene, up, size=48):
    lo, hi = scene.bounding_box()
    centre = ((lo + hi) / 2).double()
    radius = framing_radius(float((hi - lo).norm()) / 2, 45.0)
    cams = orbit_cameras(centre, radius, AZIMUTHS, ELEVATIONS, width=size, height=size, up=up)
    with torch.no_grad():
        return render(scene, cams, backend="torch").rgb


def assert_same_views(a, b):
    diff = (a - b).abs()
    assert float(diff.mean()) < 1e-4 and float(diff.max()) < 5e-3, (float(diff.mean()), float(diff.max()))


def test_robot_turned_to_minus_y_up_gives_the_same_orbit_views():
    from assets.default_scene import load_default_scene

    scene = load_default_scene()[0]
    turned = turn_scene(scene, (0, 0, 1), (0, -1, 0))
    original = orbit_views(scene, (0.0, 0.0, 1.0))
    assert_same_views(orbit_views(turned, (0.0, -1.0, 0.0)), original)
    # ...and orbiting the turned robot as if it were +z up shows something else (it lies on its back)
    assert float((orbit_views(turned, (0.0, 0.0, 1.0)) - original).abs().mean()) > 0.02


def test_a_real_minus_y_capture_turned_to_z_up_gives_the_same_orbit_views():
    capture = load(SAMPLE)
    upright = turn_scene(capture, (0, -1, 0), (0, 0, 1))
    torch.testing.assert_close(upright.means, capture.means @ rotation_between((0, -1, 0), (0, 0, 1)).float().T)
    assert_same_views(orbit_views(upright, (0.0, 0.0, 1.0)), orbit_views(capture, (0.0, -1.0, 0.0)))
