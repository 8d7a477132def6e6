"""The CUDA backend (gsplat) agrees with our CPU backend; skipped cleanly on machines without CUDA."""

from __future__ import annotations

import pytest
import torch

from engine.render import render
from render_scenes import orbit_pair, random_view_scene

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs a CUDA device")


def test_gsplat_backend_refuses_a_cpu_scene_without_importing_gsplat():
    scene = random_view_scene(10, seed=0).to(dtype=torch.float32)
    with pytest.raises(ValueError, match="CUDA"):
        render(scene, orbit_pair(16, 16, dtype=torch.float32), backend="gsplat")


@needs_cuda
@pytest.mark.parametrize("sh_degree", [0, 3])
def test_gsplat_matches_cpu_backend(sh_degree):
    pytest.importorskip("gsplat")
    scene = random_view_scene(2000, seed=sh_degree, sh_degree=sh_degree, scale_range=(0.01, 0.08)).to(dtype=torch.float32)
    cams = orbit_pair(96, 80, dtype=torch.float32)
    cpu_out = render(scene, cams, backend="torch", background=(0.2, 0.3, 0.4))
    gpu_out = render(scene.to("cuda"), cams.to("cuda"), backend="gsplat", background=(0.2, 0.3, 0.4))
    assert gpu_out.meta["backend"] == "gsplat"
    assert (gpu_out.rgb.cpu() - cpu_out.rgb).abs().max() <= 2e-3
    assert (gpu_out.alpha.cpu() - cpu_out.alpha).abs().max() <= 2e-3
    covered = cpu_out.alpha > 0.5
    torch.testing.assert_close(gpu_out.depth.cpu()[covered], cpu_out.depth[covered], atol=1e-2, rtol=1e-3)
    # same culling and radii (float32 rounding may flip a rare ceil())
    assert (gpu_out.meta["radii"].cpu() != cpu_out.meta["radii"]).float().mean() < 1e-3


@needs_cuda
def test_gsplat_colors_override_matches_cpu_backend():
    pytest.importorskip("gsplat")
    scene = random_view_scene(1000, seed=5).to(dtype=torch.float32)
    cams = orbit_pair(64, 64, dtype=torch.float32)
    colors = torch.rand(len(scene), 2, generator=torch.Generator().manual_seed(0))
    cpu_out = render(scene, cams, backend="torch", colors=colors)
    gpu_out = render(scene.to("cuda"), cams.to("cuda"), backend="gsplat", colors=colors.cuda())
    assert gpu_out.rgb.shape == cpu_out.rgb.shape == (2, 64, 64, 2)
    assert (gpu_out.rgb.cpu() - cpu_out.rgb).abs().max() <= 2e-3
