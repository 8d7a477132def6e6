"""The held-out ring: where its cameras really are (elevation, distance, azimuth measured back from the
cameras), and the coverage render that tells inside from outside the part."""

from __future__ import annotations

import math

import pytest
import torch

from engine.edit import EditConfig
from engine.evaluate.views import coverage, held_out_cameras, seen
from tests.edit.scenes import two_part_scene

CENTER = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)


def _where(cameras, up=(0.0, 0.0, 1.0)):
    """(elevation deg, distance, azimuth deg) of every camera seen from CENTER, with `up` as the pole."""
    offset = cameras.centers.double() - CENTER
    up = torch.tensor(up, dtype=torch.float64)
    distance = offset.norm(dim=-1)
    elevation = torch.rad2deg(torch.asin((offset @ up) / distance))
    flat = offset - (offset @ up)[:, None] * up
    azimuth = torch.rad2deg(torch.atan2(flat[:, 1], flat[:, 0])) % 360
    return elevation, distance, azimuth


def test_twelve_views_off_the_edits_sampling_on_every_side():
    cameras = held_out_cameras(CENTER, 2.0, resolution=16)
    elevation, distance, azimuth = _where(cameras)
    assert len(cameras) == 12 and cameras.width == cameras.height == 16
    assert sorted(set(elevation.round().tolist())) == [-25.0, 5.0, 35.0, 72.0]
    edit = EditConfig()
    low, high = edit.elevation_range
    assert (elevation < low).sum() == 3 and (elevation > high).sum() == 3  # below and above what the edit sees
    assert sorted(set((distance / 2.0).round(decimals=4).tolist())) == [0.85, 1.3, 2.0]
    gaps = (azimuth.sort().values.diff()).tolist() + [360 - float(azimuth.max() - azimuth.min())]
    assert min(gaps) > 10  # spread all round, no two views on top of each other


def test_fewer_views_are_the_rings_first_ones_and_the_up_axis_is_honoured():
    twelve = held_out_cameras(CENTER, 2.0, resolution=16, up=(0.0, -1.0, 0.0))
    five = held_out_cameras(CENTER, 2.0, resolution=16, views=5, up=(0.0, -1.0, 0.0))
    torch.testing.assert_close(five.viewmats, twelve.viewmats[:5])
    elevation, _, _ = _where(five, up=(0.0, -1.0, 0.0))
    assert elevation.tolist() == pytest.approx([-25.0, 5.0, 35.0, 72.0, -25.0])


def test_field_of_view_reaches_the_intrinsics():
    narrow = held_out_cameras(CENTER, 2.0, resolution=100, views=1, fov_y_deg=30.0)
    assert float(narrow.Ks[0, 1, 1]) == pytest.approx(50 / math.tan(math.radians(15)), rel=1e-5)


def test_coverage_is_the_parts_share_of_each_pixel():
    scene, part_ids, _ = two_part_scene(40)
    cameras = held_out_cameras(torch.zeros(3, dtype=torch.float64), 2.0, resolution=24, views=4)
    head = coverage(scene, part_ids == 0, cameras)
    body = coverage(scene, part_ids == 1, cameras)
    both = coverage(scene, torch.ones(len(scene)), cameras)
    assert head.shape == (4, 24, 24, 1) and float(head.max()) > 0.9 and float(head.min()) == 0.0
    torch.testing.assert_close(head + body, both, atol=1e-5, rtol=0)  # compositing is linear in the weights
    assert torch.equal(seen(scene, part_ids == 0, cameras), head[..., 0] > 1 / 255)
