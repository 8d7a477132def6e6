"""Analytic checks of the compositing rules, for the dense reference and the fast CPU backend alike."""

from __future__ import annotations

import math

import pytest
import torch

from engine.render import render
from render_scenes import axis_camera, gaussians

BACKENDS = ["reference", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("angle", [0.0, 0.7])
def test_single_gaussian_is_the_closed_form_2d_gaussian(backend, angle):
    W, H, f, z = 40, 34, 50.0, 5.0
    cx, cy = 19.3, 17.8
    stds = torch.tensor([0.35, 0.15, 0.2], dtype=torch.float64)
    opacity, rgb = 0.8, torch.tensor([0.9, 0.4, 0.2], dtype=torch.float64)
    scene = gaussians([[0.0, 0.0, z]], stds[None], [opacity], rgb[None], angles_z=[angle])
    out = render(scene, axis_camera(W, H, f, cx=cx, cy=cy), backend=backend)

    # On the optical axis the Jacobian is diag(f/z, f/z): cov2d = (f/z)^2 R S^2 R^T (xy block) + 0.3 I.
    c, s = math.cos(angle), math.sin(angle)
    R = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = (f / z) ** 2 * R @ torch.diag(stds[:2] ** 2) @ R.T + 0.3 * torch.eye(2, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    d = torch.stack([cx - (xs + 0.5), cy - (ys + 0.5)], dim=-1)
    sigma = 0.5 * torch.einsum("hwi,ij,hwj->hw", d, torch.linalg.inv(cov), d)
    alpha = torch.clamp(opacity * torch.exp(-sigma), max=0.999)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))

    torch.testing.assert_close(out.alpha[0, ..., 0], alpha, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.rgb[0], alpha[..., None] * rgb, atol=1e-10, rtol=0)
    assert torch.allclose(out.depth[0, ..., 0][alpha > 0], torch.tensor(z, dtype=torch.float64))
    assert (out.depth[0, ..., 0][alpha == 0] == 0).all()
    assert (alpha > 0).sum() > 50 and (alpha == 0).sum() > 50  # the test exercises both regions


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_overlapping_gaussians_composite_front_to_back(backend):
    # Both centred exactly on pixel (10, 8) (cx, cy chosen so), where exp(-sigma) = 1.
    W, H, f = 21, 17, 40.0
    cam = axis_camera(W, H, f, cx=10.5, cy=8.5)
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    scene = gaussians([[0, 0, 4.0], [0, 0, 6.0]], [[0.1] * 3, [0.15] * 3], [0.6, 0.5], [red, blue])
    out = render(scene, cam, backend=backend)
    centre_rgb, centre_alpha = out.rgb[0, 8, 10], out.alpha[0, 8, 10, 0]
    # hand-computed: 0.6 * red + (1 - 0.6) * 0.5 * blue; alpha = 1 - 0.4 * 0.5
    torch.testing.assert_close(centre_rgb, torch.tensor([0.6, 0.0, 0.2], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(centre_alpha, torch.tensor(0.8, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.depth[0, 8, 10, 0], torch.tensor((0.6 * 4 + 0.2 * 6) / 0.8, dtype=torch.float64))

    # Storage order does not matter, depth does.
    swapped = render(scene.subset([1, 0]), cam, backend=backend)
    torch.testing.assert_close(swapped.rgb, out.rgb, atol=1e-12, rtol=0)
    blue_front = scene.replace(means=torch.tensor([[0, 0, 6.0], [0, 0, 4.0]], dtype=torch.float64))
    flipped = render(blue_front, cam, backend=backend).rgb[0, 8, 10]
    torch.testing.assert_close(flipped, torch.tensor([0.5 * 0.6, 0.0, 0.5], dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_transmittance_stop_and_alpha_clamp(backend):
    W, H, f = 9, 9, 30.0
    cam = axis_camera(W, H, f, cx=4.5, cy=4.5)
    colours = torch.eye(3, dtype=torch.float64).tolist() + [[1.0, 1.0, 1.0]]
    scene = gaussians([[0, 0, 3.0 + i] for i in range(4)], [[0.2] * 3] * 4, [0.95] * 4, colours)
    out = render(scene, cam, backend=backend)
    # T: 1 -> 0.05 -> 0.0025 -> 1.25e-4; the 4th would bring it to 6.25e-6 <= 1e-4: it is not composited.
    expected = torch.tensor([0.95, 0.05 * 0.95, 0.0025 * 0.95], dtype=torch.float64)
    torch.testing.assert_close(out.rgb[0, 4, 4], expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.alpha[0, 4, 4, 0], torch.tensor(1 - 1.25e-4, dtype=torch.float64), atol=1e-12, rtol=0)

    opaque = gaussians([[0, 0, 3.0]], [[0.2] * 3], [1.0 - 1e-9], [[0.5, 0.5, 0.5]])
    clamped = render(opaque, cam, backend=backend)
    torch.testing.assert_close(clamped.alpha[0, 4, 4, 0], torch.tensor(0.999, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_culling_behind_camera_near_plane_and_off_screen(backend):
    W, H, f = 32, 24, 40.0
    cam = axis_camera(W, H, f)
    big = [[0.3] * 3]
    for z in (-5.0, 0.005):  # behind the camera / in front of the near plane (0.01): culled
        out = render(gaussians([[0, 0, z]], big, [0.9], [[1, 1, 1]]), cam, backend=backend)
        assert out.alpha.abs().max() == 0 and out.meta["radii"].abs().max() == 0
    # Centre just left of the image (beyond gsplat's 1.3x fov clamp of the Jacobian) but wide enough to
    # reach into it: it shows on the left border only.
    out = render(gaussians([[-0.55, 0, 1.0]], [[0.08] * 3], [0.9], [[1, 1, 1]]), cam, backend=backend)
    cols = (out.alpha[0, ..., 0] > 0).any(dim=0)
    assert cols[0] and not cols[-1]
    # Entirely off-screen: culled by the radius rule.
    out = render(gaussians([[-5.0, 0, 1.0]], big, [0.9], [[1, 1, 1]]), cam, backend=backend)
    assert out.alpha.abs().max() == 0 and out.meta["radii"].abs().max() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_gaussian_covers_every_tile(backend):
    W, H = 50, 37  # not multiples of the 16-pixel tile
    out = render(gaussians([[0, 0, 5.0]], [[200.0] * 3], [0.7], [[0.2, 0.4, 0.6]]), axis_camera(W, H, 40.0), backend=backend)
    torch.testing.assert_close(out.alpha[0], torch.full((H, W, 1), 0.7, dtype=torch.float64), atol=1e-3, rtol=0)


def test_background_and_colors_override():
    cam = axis_camera(16, 12, 30.0)
    scene = gaussians([[0, 0, 3.0]], [[0.1] * 3], [0.5], [[1, 0, 0]])
    out = render(scene, cam, backend="reference", background=(0.0, 1.0, 0.0))
    corner = out.rgb[0, 0, 0]  # far from the Gaussian: pure background
    torch.testing.assert_close(corner, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    feats = render(scene, cam, backend="reference", colors=torch.tensor([[2.0, -1.0]], dtype=torch.float64))
    assert feats.rgb.shape == (1, 12, 16, 2)
    torch.testing.assert_close(feats.rgb[0, ..., 0], 2 * feats.alpha[0, ..., 0])
    torch.testing.assert_close(feats.rgb[0, ..., 1], -feats.alpha[0, ..., 0])
