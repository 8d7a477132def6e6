"""The triton backend against our CPU rasterizer (backend="torch"): images, the tile lists, every gradient.

Without a GPU the Triton kernels run in triton's CPU interpreter (switched on by tests/conftest.py before triton
is first imported); it costs ~1 ms of Python per tl operation, so the scenes are tiny (tens to hundreds of
Gaussians, images of about 32x32). Tolerances: float64 scenes must agree to rounding (1e-10 on images, 1e-9 x the
gradient's scale); float32 scenes to float32 rounding of sums over a few hundred terms (stated per test).
"""

from __future__ import annotations

import pytest
import torch

from engine.render import render, triton_backend
from engine.render.cpu import Tiles
from engine.render.projection import project
from engine.scene import GaussianScene
from render_scenes import orbit_pair, random_view_scene, with_grad

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def device():
    if triton_backend.interpreted():
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    pytest.fail("triton was imported before tests/conftest.py could switch its interpreter on, and there is no GPU")


def _outputs_and_grads(scene, cameras, backend, device, *, colors=None, background=None, seed=0):
    """Forward outputs and the gradients (every raw parameter, `colors`, the 2D means) of a random linear
    function of (rgb, alpha, depth)."""
    scene, leaves = with_grad(scene.to(device))
    if colors is not None:
        colors = colors.to(device).detach().clone().requires_grad_(True)
        leaves["colors"] = colors
    out = render(scene, cameras.to(device), backend=backend, colors=colors, background=background)
    out.meta["means2d"].retain_grad()
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t)).sum()
               for t in (out.rgb, out.alpha, out.depth))
    loss.backward()
    grads = {name: leaf.grad.cpu() for name, leaf in leaves.items() if leaf.grad is not None}
    grads["means2d"] = out.meta["means2d"].grad.cpu()
    return out, grads


def _assert_agree(scene, cameras, device, *, image_atol, grad_atol, **kwargs):
    """Triton on `device` vs the CPU rasterizer: images within image_atol, each gradient within
    grad_atol x max(1, its largest entry). Returns the triton output."""
    tri, g_tri = _outputs_and_grads(scene, cameras, "triton", device, **kwargs)
    cpu, g_cpu = _outputs_and_grads(scene, cameras, "torch", torch.device("cpu"), **kwargs)
    assert tri.meta["backend"] == "triton" and tri.meta["intersections"] > 0
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(tri, name).cpu(), getattr(cpu, name), atol=image_atol, rtol=0, msg=name)
    torch.testing.assert_close(tri.meta["radii"].cpu(), cpu.meta["radii"])
    assert set(g_tri) == set(g_cpu)
    for name, ref in g_cpu.items():
        assert ref.abs().max() > 0, f"d/d {name} is zero: the comparison would prove nothing"
        scale = max(1.0, float(ref.abs().max()))
        torch.testing.assert_close(g_tri[name], ref, atol=grad_atol * scale, rtol=0, msg=f"d/d {name}")
    return tri


def test_tile_lists_match_the_cpu_rasterizer():
    """Binning and depth order in torch give exactly the CPU rasterizer's per-tile lists (gsplat's rule)."""
    scene = random_view_scene(200, seed=4, dtype=torch.float32)
    cams = orbit_pair(45, 37, dtype=torch.float32)
    proj = project(scene.means, scene.quats, scene.scales, scene.opacities, cams.viewmats, cams.Ks, 45, 37)
    ours = triton_backend.bin_tiles(proj.means2d, proj.radii, proj.depths, 45, 37)
    ref = Tiles(proj.means2d, proj.radii, proj.depths, 45, 37)
    assert ours.num_intersections == ref.num_intersections > 200
    assert ours.offsets.tolist() == ref.offsets.tolist()
    assert ours.ids.tolist() == ref.ids.tolist()


def test_random_scene_float64_matches_forward_and_every_gradient(device):
    """SH degree 1, a background, two views of 24x12 (two tiles each, both partial)."""
    scene = random_view_scene(50, seed=1, sh_degree=1)
    out = _assert_agree(scene, orbit_pair(24, 12), device, background=(0.1, 0.2, 0.3),
                        image_atol=1e-10, grad_atol=1e-9)
    assert 0.2 < float(out.alpha.detach().mean()) < 0.95  # covered and empty pixels


def test_dense_scene_stop_rule_chunks_and_colour_override(device, monkeypatch):
    """Nearly opaque, overlapping Gaussians (pixels reach the 1e-4 transmittance stop), composited 16 at a time
    (lists of ~60 per tile: several chunks and chunk boundaries) by programs of 8 pixel rows (as on a GPU), with a
    2-channel colour override."""
    from engine.render import triton_kernels

    monkeypatch.setattr(triton_kernels, "INTERPRETER_CHUNK", 16)
    monkeypatch.setattr(triton_kernels, "INTERPRETER_ROWS", 8)
    scene = random_view_scene(70, seed=5, scale_range=(0.15, 0.4), opacity_range=(0.8, 0.99))
    colors = torch.randn(len(scene), 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = _assert_agree(scene, orbit_pair(16, 16), device, colors=colors, image_atol=1e-10, grad_atol=1e-9)
    assert out.rgb.shape[-1] == 2 and out.meta["intersections"] > 2 * 16 * 2
    assert int((out.alpha.detach() > 1 - 1.1e-4).sum()) > 25  # many pixels hit the stop rule


def _robot_crop(radius: float = 0.04) -> tuple[GaussianScene, object]:
    """The bundled robot's Gaussians within `radius` of its antenna's centre (float32, as stored) and one
    24x16 view of them."""
    from assets.default_scene import load_default_scene
    from engine.camera import orbit_cameras

    scene, part_ids, names = load_default_scene()
    centre = scene.means[torch.as_tensor(part_ids) == names.index("antenna")].mean(0)
    crop = scene.subset((scene.means - centre).norm(dim=-1) < radius)
    cams = orbit_cameras(centre.double(), 4 * radius, [30.0], [20.0], width=24, height=16, fov_y_deg=40.0,
                         up=(0.0, 0.0, 1.0))
    return crop, cams.to(dtype=torch.float32)


def test_robot_crop_float32_matches(device):
    """A real capture's Gaussians in float32 (the GPU's type). Tolerances: images 1e-5, gradients 1e-4 of their
    scale (float32 sums over hundreds of terms in another order; seen: 2e-6 and 1.1e-5)."""
    scene, cams = _robot_crop()
    assert 100 < len(scene) < 400
    out = _assert_agree(scene, cams, device, background=(1.0, 1.0, 1.0), image_atol=1e-5, grad_atol=1e-4)
    assert float(out.alpha.detach().mean()) > 0.2


def test_a_masked_edit_through_triton_leaves_unmasked_gaussians_bit_identical(device, monkeypatch):
    """run_edit drawing the edited scene with the triton backend. The edit's other images (the reference prior's
    targets, the region's silhouettes of its ~20k-Gaussian voxel proxy, the view picker's visibility checks) are
    not under test and would take minutes in the interpreter: drawn by the CPU rasterizer, or not at all."""
    from engine.edit import EditConfig, run_edit
    from engine.edit.region import EditRegion
    from engine.guidance.reference import ReferencePrior, recolour_part
    from engine.render.images import rgb_renderer
    from tests.edit.scenes import params_equal, two_part_scene

    silhouette = EditRegion.project
    monkeypatch.setattr(EditRegion, "project", lambda self, cameras, *, device=None, backend="auto":
                        silhouette(self, cameras, device=device, backend="torch"))
    scene, part_ids, _ = two_part_scene(25)
    selected = part_ids == 0
    prior = ReferencePrior(recolour_part(scene, selected, (0.85, 0.1, 0.1)), render_fn=rgb_renderer("torch"))
    drawn = []
    render_triton = triton_backend.render_triton
    monkeypatch.setattr(triton_backend, "render_triton", lambda *a, **k: drawn.append(1) or render_triton(*a, **k))
    config = EditConfig(prompt="a red head", method="sds", steps=2, resolution=16, preview_every=0,
                        render_backend="triton", min_visible_fraction=0.0)
    mask = selected.float().to(device)
    result = run_edit(scene.to(device), mask, config, prior)
    assert result.steps_done == 2 and not result.cancelled and len(drawn) == 2
    keep_before, keep_after = ~selected, result.mask.cpu() <= 0.5
    assert params_equal(scene.subset(keep_before), result.scene.to("cpu").subset(keep_after))
    assert not params_equal(scene.subset(selected), result.scene.to("cpu").subset(~keep_after))


def test_a_cpu_scene_without_the_interpreter_is_refused_clearly(monkeypatch):
    monkeypatch.setattr(triton_backend, "interpreted", lambda: False)
    scene = random_view_scene(5, seed=0)
    before = scene.means.clone()
    with pytest.raises(ValueError, match="needs a scene on a CUDA device"):
        render(scene, orbit_pair(16, 16), backend="triton")
    assert torch.equal(scene.means, before)


def test_the_gpu_check_measures_triton_beside_the_baseline(device):
    """bench/gpu_check.py's triton parts at toy sizes: the agreement case and the timing keys and ratios."""
    from dataclasses import replace

    from bench import gpu_check

    plan = replace(gpu_check.quick_plan(), device=device.type, timing_gaussians=(40,), timing_sizes=((16, 16),),
                   timing_reps=1, timing_warmup=0, also=("triton",))
    scene = gpu_check.random_scene(40, sh_degree=1, seed=3, scale_range=gpu_check.density_scales(40))
    case = gpu_check.agreement_case(scene, gpu_check.view_pair((0.0, 0.0, 0.0), 3.6, 16), plan, background=None,
                                    candidate="triton")
    assert case["pass"] is True and "triton_s" in case and case["grads"]
    section = gpu_check.timing(plan)
    assert set(section["cases"]) == {"40_16x16_fwd", "40_16x16_fwd_bwd", "triton_40_16x16_fwd",
                                     "triton_40_16x16_fwd_bwd"}
    assert all(c["ms_median"] > 0 for c in section["cases"].values())
    assert set(section["triton_over_torch"]) == {"40_16x16_fwd", "40_16x16_fwd_bwd"}


def test_nothing_visible_gives_the_background_and_zero_gradients(device):
    scene = random_view_scene(10, seed=6)
    scene = scene.replace(means=scene.means * 0.01 + torch.tensor([0.0, 0.0, 100.0], dtype=scene.dtype))
    cams = orbit_pair(16, 16)  # the Gaussians lie far off-screen in both views
    scene_g, leaves = with_grad(scene.to(device))
    out = render(scene_g, cams.to(device), backend="triton", background=(0.1, 0.2, 0.3))
    assert out.meta["intersections"] == 0
    assert torch.equal(out.alpha.detach().cpu(), torch.zeros(2, 16, 16, 1, dtype=scene.dtype))
    assert torch.allclose(out.rgb.detach().cpu(), torch.tensor([0.1, 0.2, 0.3], dtype=scene.dtype).expand(2, 16, 16, 3))
    (out.rgb.sum() + out.alpha.sum()).backward()
    assert all(leaf.grad is None or not leaf.grad.any() for leaf in leaves.values())
