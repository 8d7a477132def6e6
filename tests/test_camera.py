import math

import pytest
import torch

from engine.camera import (
    Cameras, framing_radius, intrinsics_from_fov, look_at, orbit_cameras, sample_orbit_cameras,
)


def project(cams: Cameras, points: torch.Tensor) -> torch.Tensor:
    """[C, P, 3] (u, v, z) pixels of world points."""
    pc = (cams.viewmats[:, None, :3, :3] @ points[None, :, :, None])[..., 0] + cams.viewmats[:, None, :3, 3]
    uv = (cams.Ks[:, None] @ (pc / pc[..., 2:3])[..., None])[..., 0]
    return torch.cat([uv[..., :2], pc[..., 2:3]], dim=-1)


def test_look_at_puts_target_at_image_centre_and_up_is_minus_v():
    cams = orbit_cameras(torch.tensor([0.5, -0.2, 0.3]), 4.0, [0, 45, 170], 30, width=64, height=48)
    uvz = project(cams, torch.tensor([[0.5, -0.2, 0.3], [0.5, -0.2, 0.8]]))
    assert torch.allclose(uvz[:, 0, :2], torch.tensor([32.0, 24.0]), atol=1e-3)
    assert torch.allclose(uvz[:, 0, 2], torch.full((3,), 4.0), atol=1e-4)
    assert torch.all(uvz[:, 1, 1] < 24.0)  # a point above the target is higher in the image (smaller v)


def test_viewmats_are_rigid():
    cams = sample_orbit_cameras(16, torch.zeros(3), radius_range=(2, 5), width=32, height=32,
                                generator=torch.Generator().manual_seed(0))
    R = cams.viewmats[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(16, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(16), atol=1e-5)
    d = cams.centers.norm(dim=-1)
    assert torch.all(d >= 2 - 1e-4) and torch.all(d <= 5 + 1e-4)


def test_orbit_angles_follow_the_documented_convention():
    cams = orbit_cameras(torch.zeros(3), 2.0, [0, 90], 0, width=8, height=8)
    assert torch.allclose(cams.centers[0], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)
    assert torch.allclose(cams.centers[1], torch.tensor([0.0, 2.0, 0.0]), atol=1e-5)
    top = orbit_cameras(torch.zeros(3), 2.0, [0], 90, width=8, height=8)
    assert torch.allclose(top.centers[0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)
    assert torch.isfinite(top.viewmats).all()  # looking straight down is not degenerate


def test_intrinsics_from_fov():
    K = intrinsics_from_fov(100, 50, 90.0)
    assert math.isclose(float(K[1, 1]), 25.0, rel_tol=1e-6) and float(K[0, 2]) == 50.0
    with pytest.raises(ValueError, match="field of view"):
        intrinsics_from_fov(10, 10, 180.0)


def test_framing_radius_fits_sphere():
    r = framing_radius(1.0, 60.0, margin=1.0)
    assert math.isclose(r, 2.0, rel_tol=1e-9)


def test_with_size_rescales_intrinsics_and_indexing():
    cams = orbit_cameras(torch.zeros(3), 3.0, [0, 90, 180], 10, width=64, height=32)
    half = cams.with_size(32, 16)
    assert torch.allclose(half.Ks[:, :2], cams.Ks[:, :2] / 2)
    assert len(cams[1]) == 1 and len(cams[-1]) == 1 and torch.equal(cams[-1].viewmats, cams.viewmats[2:])


def test_bad_cameras_are_refused():
    with pytest.raises(ValueError, match="viewmats"):
        Cameras(torch.eye(3)[None], torch.eye(3)[None], 4, 4)
    with pytest.raises(ValueError, match="image size"):
        Cameras(torch.eye(4)[None], torch.eye(3)[None], 0, 4)
    with pytest.raises(ValueError, match="NaN"):
        Cameras(torch.full((1, 4, 4), float("nan")), torch.eye(3)[None], 4, 4)
