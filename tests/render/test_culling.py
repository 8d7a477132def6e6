"""The culling test keeps every Gaussian the projection keeps, and a culled render is the full render."""

from __future__ import annotations

import torch

from engine.camera import orbit_cameras
from engine.render.cpu import render_cpu
from engine.render._cpu_kernels import tile_rects
from engine.render.culling import reaching, reaching_tiles, reaching_views
from engine.render.projection import project
from engine.scene import GaussianScene
from render_scenes import random_view_scene, with_grad


def _wide_scene(num: int, seed: int, dtype=torch.float32) -> GaussianScene:
    """Random Gaussians in a cube of side 16 (a close camera sees a few of them), some of them large, some
    behind the camera, so that many straddle the image border."""
    scene = random_view_scene(num, seed=seed, sh_degree=3, dtype=dtype, scale_range=(0.01, 0.3))
    return scene.replace(means=scene.means * 8.0)


def _close_cameras(dtype=torch.float32):
    return orbit_cameras(torch.zeros(3), 1.5, [10.0, 200.0], [5.0, -40.0], width=40, height=32,
                         fov_y_deg=50.0).to(dtype=dtype)


def test_reaching_views_gives_each_camera_the_rows_reaching_gives_it_alone():
    scene = _wide_scene(3000, seed=2)
    cams = orbit_cameras(torch.zeros(3), 3.0, torch.linspace(0, 350, 70).tolist(), 10.0, width=40, height=32)
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(70, 2, generator=g) * torch.tensor([30.0, 24.0])
    windows = torch.cat([lo, lo + 1 + torch.rand(70, 2, generator=g) * 12], dim=1)  # 70: two chunks of cameras
    rows = reaching_views(scene.means, scene.scales, scene.opacities, cams, windows)
    assert len(rows) == 70
    for c in (0, 33, 63, 64, 69):
        alone = reaching(scene.means, scene.scales, scene.opacities, cams[c], windows[c:c + 1]).nonzero().flatten()
        assert len(alone) > 0 and torch.equal(rows[c], alone)


def test_reaching_keeps_every_gaussian_the_projection_keeps():
    scene = _wide_scene(4000, seed=1, dtype=torch.float64)
    cams = _close_cameras(torch.float64)
    proj = project(scene.means, scene.quats, scene.scales, scene.opacities, cams.viewmats, cams.Ks, 40, 32)
    kept_by_projection = (proj.radii > 0).all(-1).any(0)
    kept = reaching(scene.means, scene.scales, scene.opacities, cams)
    assert kept_by_projection.any()
    assert not (kept_by_projection & ~kept).any()
    assert kept.sum() < 0.5 * len(scene)  # it does cull

    # a window: every Gaussian whose projected box overlaps it is kept
    window = torch.tensor([[25.0, 3.0, 31.0, 9.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    kept = reaching(scene.means, scene.scales, scene.opacities, cams, window)
    m = proj.means2d
    r = proj.radii.to(m.dtype)
    overlaps = ((m[..., 0] + r[..., 0] > window[:, None, 0]) & (m[..., 0] - r[..., 0] < window[:, None, 2])
                & (m[..., 1] + r[..., 1] > window[:, None, 1]) & (m[..., 1] - r[..., 1] < window[:, None, 3])
                & (proj.radii > 0).all(-1)).any(0)
    assert overlaps.any() and not (overlaps & ~kept).any()
    assert kept.sum() < kept_by_projection.sum()


def test_reaching_tiles_keeps_every_row_the_projection_lists_in_a_tile_no_deeper_than_its_far():
    scene = _wide_scene(4000, seed=1, dtype=torch.float64)
    cams = _close_cameras(torch.float64)  # 40 x 32: 3 x 2 tiles, the last column partial
    proj = project(scene.means, scene.quats, scene.scales, scene.opacities, cams.viewmats, cams.Ks, 40, 32)
    fars = torch.rand(2, 2, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 6.0
    fars[0, 1, 2] = fars[1, 0, 0] = -torch.inf  # tiles with nothing in them
    rows = reaching_tiles(scene.means, scene.scales, scene.opacities, cams, fars.numpy())
    rect, _ = tile_rects(proj.means2d.float().numpy(), proj.radii.numpy(), 3, 2)
    for c in range(2):
        want = torch.zeros(len(scene), dtype=torch.bool)
        for ty in range(2):
            for tx in range(3):
                listed = torch.from_numpy((rect[c, :, 0] <= tx) & (rect[c, :, 2] > tx) & (rect[c, :, 1] <= ty)
                                          & (rect[c, :, 3] > ty))
                want |= listed & (proj.depths[c] <= fars[c, ty, tx])
        got = torch.zeros(len(scene), dtype=torch.bool)
        got[rows[c]] = True
        assert want.any() and not (want & ~got).any()
        assert got.sum() < (proj.radii[c] > 0).all(-1).sum()  # it does cull


def test_culled_render_is_the_full_render_with_the_same_gradients():
    scene = _wide_scene(3000, seed=2)
    cams = _close_cameras()
    outs, grads = [], []
    for cull in (False, True):
        s, leaves = with_grad(scene)
        out = render_cpu(s, cams, sh_degree=3, background=(0.2, 0.3, 0.4), cull=cull)
        out.meta["means2d"].retain_grad()
        g = torch.Generator().manual_seed(0)
        loss = (out.rgb * torch.rand(out.rgb.shape, generator=g)).sum() + out.depth.sum() + out.alpha.sum()
        loss.backward()
        outs.append(out)
        grads.append({**{n: t.grad for n, t in leaves.items()}, "means2d": out.meta["means2d"].grad})
    full, culled = outs
    for name in ("rgb", "alpha", "depth"):
        assert torch.equal(getattr(full, name), getattr(culled, name)), name
    assert torch.equal(full.meta["radii"], culled.meta["radii"])
    kept = reaching(scene.means, scene.scales, scene.opacities, cams)
    assert 0 < kept.sum() < 0.5 * len(scene)
    for name, g in grads[0].items():
        rows = (slice(None), kept) if name == "means2d" else kept
        assert torch.equal(g[rows], grads[1][name][rows]), name
        if name != "means2d":
            assert not grads[1][name][~kept].any(), name


def test_culled_render_with_colour_overrides():
    scene = _wide_scene(2000, seed=3)
    cams = _close_cameras()
    per_view = torch.rand(len(cams), len(scene), 2, generator=torch.Generator().manual_seed(1))
    for colors in (per_view[0], per_view):
        a = render_cpu(scene, cams, sh_degree=0, colors=colors, cull=False)
        b = render_cpu(scene, cams, sh_degree=0, colors=colors, cull=True)
        assert torch.equal(a.rgb, b.rgb) and torch.equal(a.alpha, b.alpha)


def test_an_edit_over_cached_frozen_views_is_the_edit_that_renders_everything(monkeypatch):
    """The edit loop draws its part over frozen views cached once per view (engine/render/frozen_view.py, a
    shape edit: the part moves): the result is bit-identical to the edit that renders every row every step,
    and the unmasked rows are the input's."""
    import engine.edit.view_pool as view_pool
    import engine.render.cpu as cpu_module
    import engine.render.culling as culling
    from engine.edit import EditConfig, run_edit
    from engine.guidance.closed_form import ClosedFormPrior
    from tests.edit.scenes import params_equal, two_part_scene

    near, part_ids, _ = two_part_scene(60)
    crowd = random_view_scene(600, seed=4, sh_degree=0, dtype=torch.float32, scale_range=(0.02, 0.1))
    crowd = crowd.replace(means=crowd.means * 6.0)  # around and behind the part, mostly out of its views
    scene = GaussianScene.concat([near, crowd])
    mask = torch.cat([(part_ids == 0).float(), torch.zeros(len(crowd))])
    config = EditConfig(prompt="a red head", method="sds", steps=4, resolution=32, preview_every=0, edit="shape")

    drawn = []
    original = view_pool.render_over_frozen
    monkeypatch.setattr(view_pool, "render_over_frozen", lambda *a, **k: drawn.append(1) or original(*a, **k))
    cached = run_edit(scene, mask, config, ClosedFormPrior((0.85, 0.1, 0.1)))
    assert len(drawn) == 4  # every step drew over the cached views

    monkeypatch.setattr(view_pool, "frozen_views_serve", lambda *a: False)  # render frozen + part every step
    monkeypatch.setattr(culling, "reaching_index", lambda *a, **k: None)  # ... and every row
    monkeypatch.setattr(cpu_module, "reaching_index", lambda *a, **k: None)
    full = run_edit(scene, mask, config, ClosedFormPrior((0.85, 0.1, 0.1)))
    assert len(drawn) == 4
    assert params_equal(cached.scene, full.scene) and torch.equal(cached.mask, full.mask)
    outside = mask <= 0.5
    assert params_equal(cached.scene.subset(cached.mask <= 0.5), scene.subset(outside))
    assert not params_equal(cached.scene.subset(cached.mask > 0.5), scene.subset(~outside))  # the part changed
