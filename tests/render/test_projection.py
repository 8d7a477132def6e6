"""EWA projection: the compiled kernels against the torch version, and gsplat's culling / radius rules."""

from __future__ import annotations

import math

import torch

from engine.render import cpu
from engine.render.projection import project
from render_scenes import axis_camera, gaussians, orbit_pair, random_view_scene, with_grad


def _torch_projection(scene, cams):
    return project(scene.means, scene.quats, scene.scales, scene.opacities, cams.viewmats, cams.Ks, cams.width,
                   cams.height)


def test_compiled_projection_matches_torch_values_and_vjp():
    scene = random_view_scene(300, seed=1, scale_range=(0.01, 0.6))
    cams = orbit_pair(64, 48, distance=1.2)  # inside the cloud: some Gaussians behind / beside the cameras
    results = []
    for fn in (_torch_projection, cpu.project_fast):
        s, leaves = with_grad(scene)
        p = fn(s, cams)
        visible = (p.radii > 0).all(dim=-1)
        g = torch.Generator().manual_seed(0)
        # culled entries carry arbitrary values in either version: only visible ones count
        loss = sum(
            (torch.where(visible[..., None] if t.dim() == 3 else visible, t, torch.zeros_like(t))
             * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum()
            for t in (p.means2d, p.conics, p.depths, p.opacities)
        )
        loss.backward()
        results.append((p, visible, {k: v.grad for k, v in leaves.items() if v.grad is not None}))
    (pt, vis_t, gt), (pf, vis_f, gf) = results
    assert torch.equal(pt.radii, pf.radii) and torch.equal(vis_t, vis_f)
    assert 0 < vis_t.sum() < vis_t.numel()
    for a, b in ((pt.means2d, pf.means2d), (pt.conics, pf.conics)):
        torch.testing.assert_close(a[vis_t], b[vis_t], atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(pt.depths, pf.depths)
    torch.testing.assert_close(pt.opacities, pf.opacities)
    assert set(gt) == set(gf) == {"means", "quats", "scales", "opacities"}
    for name in gt:
        torch.testing.assert_close(gf[name], gt[name], atol=1e-8, rtol=1e-8, msg=name)


def test_near_plane_and_radius_rules():
    cam = axis_camera(64, 64, 50.0)
    scene = gaussians([[0, 0, 0.01], [0, 0, 0.0099], [0.0, 0.0, 4.0]], [[1e-3] * 3, [1e-3] * 3, [0.2, 0.1, 0.1]],
                      [0.9, 0.9, 0.5], [[1, 1, 1]] * 3)
    for fn in (_torch_projection, cpu.project_fast):
        radii = fn(scene, cam).radii[0]
        assert (radii[0] > 0).all() and (radii[1] == 0).all()  # culled only when z < near (0.01)
        # opacity-aware radius: ceil(min(3.33, sqrt(2 ln(255 o))) * sqrt(cov2d diagonal + 0.3))
        extend = min(3.33, math.sqrt(2 * math.log(0.5 * 255)))
        expected = [math.ceil(extend * math.sqrt((50.0 * s / 4.0) ** 2 + 0.3)) for s in (0.2, 0.1)]
        assert radii[2].tolist() == expected
