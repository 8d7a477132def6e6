"""Spherical harmonics: orthonormal real basis with gsplat's constants and signs; compiled == torch."""

from __future__ import annotations

import math

import torch

from engine.render import cpu
from engine.render.projection import view_colors
from engine.sh import sh_basis
from render_scenes import orbit_pair, random_view_scene, with_grad


def test_basis_is_orthonormal_on_the_sphere():
    n_theta, n_phi = 200, 400
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) * math.pi / n_theta
    phi = torch.arange(n_phi, dtype=torch.float64) * 2 * math.pi / n_phi
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    dirs = torch.stack([torch.sin(t) * torch.cos(p), torch.sin(t) * torch.sin(p), torch.cos(t)], dim=-1)
    basis = sh_basis(3, dirs).reshape(-1, 16)
    weight = (torch.sin(t) * (math.pi / n_theta) * (2 * math.pi / n_phi)).reshape(-1, 1)
    gram = basis.T @ (basis * weight)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-4, rtol=0)


def test_signs_follow_gsplat():
    # gsplat (Sloan's forms): Y1 = -0.4886 y, Y2 = 0.4886 z, Y3 = -0.4886 x; Y6(z) = 0.94617 - 0.31539;
    # Y12(z) = 1.86588 - 1.11953; Y4 = 0.54627 * 2xy; Y10 = 1.44531 * z * 2xy
    x, y, z = torch.eye(3, dtype=torch.float64)
    assert math.isclose(sh_basis(1, y)[1], -0.4886025119029199)
    assert math.isclose(sh_basis(1, z)[2], 0.4886025119029199)
    assert math.isclose(sh_basis(1, x)[3], -0.4886025119029199)
    assert math.isclose(sh_basis(2, z)[6], 0.9461746957575601 - 0.3153915652525201)
    assert math.isclose(sh_basis(3, z)[12], 1.865881662950577 - 1.119528997770346)
    d = torch.tensor([0.48, 0.6, 0.64], dtype=torch.float64)  # unit
    assert math.isclose(sh_basis(2, d)[4], 0.5462742152960395 * 2 * 0.48 * 0.6, rel_tol=1e-12)
    assert math.isclose(sh_basis(3, d)[10], 1.445305721320277 * 0.64 * 2 * 0.48 * 0.6, rel_tol=1e-12)


def test_compiled_sh_colours_match_torch_values_and_gradients():
    scene = random_view_scene(200, seed=6, sh_degree=3)
    cams = orbit_pair(32, 32)
    radii = torch.ones(len(cams), len(scene), 2, dtype=torch.int32)
    results = []
    for degree in (0, 2, 3):
        for fast in (False, True):
            s, leaves = with_grad(scene)
            colors = (cpu.sh_colors_fast(s, cams, degree, radii) if fast
                      else view_colors(s.sh, degree, s.means, cams.viewmats))
            w = torch.randn(colors.shape, generator=torch.Generator().manual_seed(degree), dtype=torch.float64)
            (colors * w).sum().backward()
            grads = {k: leaves[k].grad for k in ("means", "sh0", "shN")}
            results.append((colors.detach(), {k: torch.zeros_like(leaves[k]) if g is None else g for k, g in grads.items()}))
        (c_t, g_t), (c_f, g_f) = results[-2:]
        assert (c_t == 0).any() or degree == 0  # the clamp at 0 is exercised
        torch.testing.assert_close(c_f, c_t, atol=1e-12, rtol=0)
        for name in g_t:
            torch.testing.assert_close(g_f[name], g_t[name], atol=1e-10, rtol=0, msg=name)
