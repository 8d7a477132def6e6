"""The one orbit both loops sample: what it frames, and where its cameras stand."""

import math

import torch

from engine.camera import framing_radius
from engine.optimize.orbit import Orbit

CENTER = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)


def _positions(cameras) -> torch.Tensor:  # [C, 3] world positions of the camera centres
    rot, trans = cameras.viewmats[:, :3, :3].double(), cameras.viewmats[:, :3, 3].double()
    return -(rot.transpose(1, 2) @ trans[..., None])[..., 0]


def _orbit(points, sizes) -> Orbit:
    return Orbit.around(points, CENTER, sizes, fov_y_deg=40.0, elevation_range=(0.0, 30.0), radius_range=(1.0, 1.5),
                        up=(0.0, 0.0, 1.0), resolution=32)


def test_it_frames_98_percent_of_the_points_padded_by_twice_the_median_size():
    g = torch.Generator().manual_seed(0)
    shell = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    stray = torch.tensor([[50.0, 0.0, 0.0]], dtype=torch.float64)  # one far-off Gaussian must not push it back
    sizes = torch.cat([torch.full((150,), 0.1), torch.full((51,), 5.0)])  # the median is 0.1
    orbit = _orbit(CENTER + torch.cat([shell, stray]), sizes)
    assert math.isclose(orbit.half_extent, 1.0 + 2 * 0.1, rel_tol=1e-6)  # sizes are float32
    assert math.isclose(orbit.radius, framing_radius(orbit.half_extent, 40.0))
    few = _orbit(CENTER + torch.cat([shell[:5], stray]), torch.zeros(0))  # 20 points or fewer: all of them
    assert math.isclose(few.half_extent, 50.0, rel_tol=1e-9)  # the stray one included, no size padding


def test_sampled_and_ring_cameras_stand_in_their_ranges_around_the_centre():
    orbit = _orbit(CENTER + torch.eye(3, dtype=torch.float64), torch.full((3,), 0.05))
    cams = orbit.sample(64, torch.Generator().manual_seed(1))
    dist = (_positions(cams) - CENTER).norm(dim=-1)
    assert cams.width == cams.height == 32
    assert float(dist.min()) >= orbit.radius - 1e-6 and float(dist.max()) <= 1.5 * orbit.radius + 1e-6
    assert float(dist.max() - dist.min()) > 0.2 * orbit.radius  # distances really vary
    ring = orbit.ring(4, resolution=16, offset_deg=30.0)
    pos = _positions(ring) - CENTER
    assert ring.width == 16 and torch.allclose(pos.norm(dim=-1), torch.full((4,), 1.25 * orbit.radius,
                                                                             dtype=torch.float64))
    assert torch.allclose(pos[:, 2], pos[0, 2].expand(4))  # one elevation
    azimuths = torch.rad2deg(torch.atan2(pos[:, 1], pos[:, 0]))
    steps = (azimuths.roll(-1) - azimuths) % 360
    assert torch.allclose(steps, torch.full((4,), 90.0, dtype=torch.float64), atol=1e-6)  # evenly spaced
