"""The fast CPU backend (numba kernels, hand-written backward) against the dense reference and gradcheck."""

from __future__ import annotations

import pytest
import torch

from engine.render import cpu, render
from engine.scene import GaussianScene
from render_scenes import axis_camera, gaussians, orbit_pair, random_view_scene, with_grad

PARAMS = ("means", "quats", "scales", "opacities", "sh0", "shN")


def _outputs_and_grads(scene, cameras, backend, *, colors=None, background=None, sh_degree=None, seed=0):
    """Forward outputs and gradients of a random linear function of (rgb, alpha, depth)."""
    scene, leaves = with_grad(scene)
    if colors is not None:
        colors = colors.detach().clone().requires_grad_(True)
        leaves["colors"] = colors
    out = render(scene, cameras, backend=backend, colors=colors, background=background, sh_degree=sh_degree)
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)).sum()
               for t in (out.rgb, out.alpha, out.depth))
    loss.backward()
    return out, {name: leaf.grad for name, leaf in leaves.items()}


def _assert_backends_agree(scene, cameras, atol=1e-9, **kwargs):
    fast, g_fast = _outputs_and_grads(scene, cameras, "torch", **kwargs)
    ref, g_ref = _outputs_and_grads(scene, cameras, "reference", **kwargs)
    assert fast.meta["backend"] == "torch"
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=atol, rtol=0, msg=name)
    torch.testing.assert_close(fast.meta["radii"], ref.meta["radii"])
    for name, grad in g_ref.items():
        if grad is None:  # unused by the reference (SH under a colors override)
            assert g_fast[name] is None or not g_fast[name].any(), name
            continue
        scale = max(1.0, float(grad.abs().max())) if grad.numel() else 1.0
        torch.testing.assert_close(g_fast[name], grad, atol=atol * scale, rtol=0, msg=f"d/d {name}")
    return fast


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_matches_reference_forward_and_gradients(sh_degree):
    scene = random_view_scene(150, seed=sh_degree, sh_degree=sh_degree)
    out = _assert_backends_agree(scene, orbit_pair(45, 37), background=(0.1, 0.2, 0.3))
    assert 0.2 < out.alpha.mean() < 0.95  # a scene with both covered and empty pixels


def test_matches_reference_with_lower_sh_degree_than_stored():
    scene = random_view_scene(80, seed=7, sh_degree=3)
    _assert_backends_agree(scene, orbit_pair(33, 29), sh_degree=1)


@pytest.mark.parametrize("width", [1, 2, 4])
def test_colors_override_with_any_feature_width(width):
    scene = random_view_scene(120, seed=11)
    colors = torch.randn(len(scene), width, dtype=torch.float64, generator=torch.Generator().manual_seed(width))
    out = _assert_backends_agree(scene, orbit_pair(40, 31), colors=colors)
    assert out.rgb.shape == (2, 31, 40, width)


def test_per_camera_colors_override():
    scene = random_view_scene(60, seed=3)
    colors = torch.rand(2, len(scene), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _assert_backends_agree(scene, orbit_pair(24, 20), colors=colors)


def test_transmittance_stop_in_dense_scenes():
    scene = random_view_scene(300, seed=5, scale_range=(0.15, 0.4), opacity_range=(0.8, 0.99))
    out = _assert_backends_agree(scene, orbit_pair(40, 40))
    assert (out.alpha > 1 - 1.1e-4).sum() > 100  # many pixels hit the stop rule


def test_culling_edge_cases_match_reference():
    # behind the camera, inside the near plane, off-screen, partly off-screen (fov clamp), huge, tiny,
    # elongated, and nearly opaque (alpha clamped at 0.999, which blocks its gradient)
    means = [[0, 0, -2.0], [0, 0, 0.005], [9.0, 0, 2.0], [-0.6, 0.1, 1.0], [0.1, 0, 4.0], [0.05, 0.02, 3.0],
             [0.2, -0.1, 2.5], [-0.075, -0.025, 2.0]]  # the last one centred exactly on pixel (22, 17)
    stds = [[0.3] * 3, [0.3] * 3, [0.3] * 3, [0.1, 0.05, 0.1], [30.0, 20.0, 10.0], [1e-4] * 3, [0.01, 0.4, 0.2],
            [0.05] * 3]
    g = torch.Generator().manual_seed(0)
    scene = gaussians(means, stds, [0.9, 0.9, 0.9, 0.8, 0.3, 0.9, 0.7, 0.9995],
                      torch.rand(8, 3, generator=g).tolist(), angles_z=[0, 0, 0, 0.3, 0.2, 0, 1.0, 0], sh_degree=1)
    scene = scene.replace(shN=0.2 * torch.randn(8, 3, 3, dtype=torch.float64, generator=g))
    out = _assert_backends_agree(scene, axis_camera(48, 36, 40.0))
    radii = out.meta["radii"][0]
    assert (radii[:3] == 0).all() and (radii[3:] > 0).all()


def test_float32_matches_float64_reference():
    scene = random_view_scene(150, seed=21, sh_degree=2)
    cams = orbit_pair(45, 37)
    fast, g_fast = _outputs_and_grads(scene.to(dtype=torch.float32), cams.to(dtype=torch.float32), "torch")
    ref, g_ref = _outputs_and_grads(scene, cams, "reference")
    assert fast.rgb.dtype == torch.float32
    torch.testing.assert_close(fast.rgb.double(), ref.rgb, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.alpha.double(), ref.alpha, atol=1e-4, rtol=0)
    for name in PARAMS:
        scale = max(1.0, float(g_ref[name].abs().max())) if g_ref[name].numel() else 1.0
        torch.testing.assert_close(g_fast[name].double(), g_ref[name], atol=2e-3 * scale, rtol=0, msg=name)


def test_gradcheck_all_raw_parameters_and_colors():
    scene = gaussians([[0.05, -0.02, 3.0], [-0.1, 0.08, 3.5], [0.12, 0.1, 4.0]],
                      [[0.08, 0.05, 0.06], [0.06, 0.1, 0.05], [0.1, 0.07, 0.09]], [0.7, 0.5, 0.6],
                      [[0.8, 0.3, 0.2], [0.2, 0.7, 0.4], [0.3, 0.3, 0.8]], angles_z=[0.3, -0.5, 1.1], sh_degree=1)
    scene = scene.replace(shN=0.05 * torch.randn(3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    cam = axis_camera(14, 11, 30.0, cx=7.2, cy=5.1)

    def run(means, quats, scales, opacities, sh0, shN):
        out = render(GaussianScene(means, quats, scales, opacities, sh0, shN), cam, backend="torch",
                     background=(0.3, 0.3, 0.3))
        return out.rgb, out.alpha, out.depth

    inputs = tuple(v.detach().clone().requires_grad_(True) for _, v in scene.items())
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)

    def run_colors(colors, means):
        out = render(scene.replace(means=means), cam, backend="torch", colors=colors)
        return out.rgb, out.alpha

    colors = torch.rand(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    assert torch.autograd.gradcheck(run_colors, (colors, scene.means.clone().requires_grad_(True)), eps=1e-6,
                                    atol=1e-6, rtol=1e-4)


def test_means2d_gradient_for_densification_and_no_grad_forward():
    scene, leaves = with_grad(random_view_scene(100, seed=2).to(dtype=torch.float32))
    cams = orbit_pair(32, 32, dtype=torch.float32)
    out = render(scene, cams, backend="torch")
    means2d = out.meta["means2d"]
    means2d.retain_grad()
    out.rgb.sum().backward()
    visible = (out.meta["radii"] > 0).all(dim=-1)
    assert means2d.grad.shape == (2, 100, 2)
    assert means2d.grad[visible].abs().sum() > 0 and means2d.grad[~visible].abs().sum() == 0
    with torch.no_grad():
        again = render(scene, cams, backend="torch")
    assert torch.equal(again.rgb, out.rgb.detach())  # deterministic, with or without autograd


def test_result_does_not_depend_on_the_thread_count(monkeypatch):
    scene = random_view_scene(200, seed=9).to(dtype=torch.float32)
    cams = orbit_pair(70, 50, dtype=torch.float32)
    _, grads_many = _outputs_and_grads(scene, cams, "torch")
    first = render(scene, cams, backend="torch").rgb
    monkeypatch.setattr(cpu, "NUM_THREADS", 1)
    _, grads_one = _outputs_and_grads(scene, cams, "torch")
    assert torch.equal(render(scene, cams, backend="torch").rgb, first)
    for name in PARAMS:
        torch.testing.assert_close(grads_one[name], grads_many[name], atol=1e-6, rtol=1e-5)


def test_camera_gradients_use_the_torch_projection():
    scene = random_view_scene(40, seed=4)
    cams = orbit_pair(20, 20)
    viewmats = cams.viewmats.clone().requires_grad_(True)
    out = render(scene, type(cams)(viewmats, cams.Ks, cams.width, cams.height), backend="torch")
    out.rgb.sum().backward()
    assert viewmats.grad is not None and viewmats.grad.abs().sum() > 0
    torch.testing.assert_close(out.rgb, render(scene, cams, backend="torch").rgb)


def test_depth_sort_is_stable_like_gsplat():
    from engine.render import _cpu_kernels as K

    rng = torch.Generator().manual_seed(0)
    depths = torch.randint(1, 50, (5000,), generator=rng).float() * 0.37  # many ties
    depths[:100] = torch.rand(100, generator=rng) * 1e4
    keys = depths.numpy().view("uint32")
    expected = torch.argsort(depths, stable=True).numpy()
    assert (K.argsort_depths(keys) == expected).all()


def test_equal_depths_composite_in_index_order():
    cam = axis_camera(9, 9, 30.0, cx=4.5, cy=4.5)
    scene = gaussians([[0, 0, 3.0], [0, 0, 3.0]], [[0.2] * 3] * 2, [0.5, 0.5], [[1, 0, 0], [0, 0, 1]])
    for backend in ("torch", "reference"):
        centre = render(scene, cam, backend=backend).rgb[0, 4, 4]
        torch.testing.assert_close(centre, torch.tensor([0.5, 0.0, 0.25], dtype=torch.float64))


def test_needle_gaussians_in_float32():
    # Very elongated footprints: the ellipse spans must be computed in float64 (float32 det cancels).
    angles = torch.linspace(0.1, 3.0, 12, dtype=torch.float64)
    means = torch.stack([0.3 * torch.cos(angles * 2), 0.2 * torch.sin(angles * 3), 3.0 + angles / 3], dim=-1)
    stds = torch.tensor([[0.8, 0.0015, 0.002]] * 9 + [[40.0, 0.001, 0.001]] * 3, dtype=torch.float64)
    scene = gaussians(means, stds, torch.full((12,), 0.9), torch.rand(12, 3, generator=torch.Generator().manual_seed(0)),
                      angles_z=angles)
    cam = axis_camera(80, 60, 60.0)
    ref = render(scene, cam, backend="reference")
    fast = render(scene.to(dtype=torch.float32), cam.to(dtype=torch.float32), backend="torch")
    assert (ref.alpha > 0).sum() > 300
    torch.testing.assert_close(fast.alpha.double(), ref.alpha, atol=2e-4, rtol=0)
    torch.testing.assert_close(fast.rgb.double(), ref.rgb, atol=2e-4, rtol=0)


def test_concurrent_renders_from_several_threads():
    # the app renders from its optimization thread and its viewer thread at the same time
    from concurrent.futures import ThreadPoolExecutor

    scenes = [random_view_scene(300, seed=s).to(dtype=torch.float32) for s in range(4)]
    cams = orbit_pair(48, 40, dtype=torch.float32)
    expected = [render(s, cams, backend="torch").rgb for s in scenes]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda s: render(s, cams, backend="torch").rgb, scenes * 3))
    for i, rgb in enumerate(results):
        assert torch.equal(rgb, expected[i % 4])
