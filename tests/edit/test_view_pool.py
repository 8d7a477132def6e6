"""The edit's view pool: its cached render is the full render of frozen + trainable rows (bit for bit, before and
after the part moved), its masks are the region's projection, and fixed scenes are drawn once per view with the
step's background composited exactly as the renderer does it."""

from __future__ import annotations

import torch

from engine.edit import EditConfig, ViewPicker, part_orbit, plan_region
from engine.edit.params import MaskedParams
from engine.edit.view_pool import PlainRenders, ViewPool
from engine.render import render
from engine.render.culling import frozen_and_trainable

from .scenes import two_part_scene


def _pool(size: int = 3, **kwargs):
    scene, part_ids, _ = two_part_scene(120)
    mask = (part_ids == 0).float()
    config = EditConfig(prompt="x", resolution=40)
    region, orbit = plan_region(scene, mask, config)
    state = MaskedParams(scene, mask, config.mask_threshold)
    picker = ViewPicker(part_orbit(scene, mask, config), scene, mask > 0.5, 0.25, "torch")
    pool = ViewPool(picker, size, torch.Generator().manual_seed(0), region, state.base, state.frozen_rows, "torch", "cpu",
                    **kwargs)
    return pool, state, region


def _full(state: MaskedParams, cameras, background):
    scene, _ = frozen_and_trainable(state.base.subset(state.frozen_rows), state.params, cameras)
    return render(scene, cameras, background=background, backend="torch")


def test_pool_render_is_the_full_render_and_its_masks_the_regions():
    pool, state, region = _pool()
    assert pool.cached and len(pool) == 3
    cameras = pool.cameras[pool.draw(2, torch.Generator().manual_seed(1))]
    bg = (0.3, 0.6, 0.1)
    out, skip = pool.render(state.params, cameras, bg)
    assert skip == 0 and out.meta["means2d"].shape == (2, state.num_trainable, 2)
    assert torch.equal(out.rgb, _full(state, cameras, bg).rgb)
    with torch.no_grad():  # the part moves (a shape edit): the cached frozen rows stay right
        state.params["means"] += torch.tensor([0.05, 0.0, -0.08])
    assert torch.equal(pool.render(state.params, cameras, bg)[0].rgb, _full(state, cameras, bg).rgb)
    assert torch.equal(pool.masks(cameras), region.project(cameras, backend="torch"))
    assert 0 < pool.nbytes < 10 * 2**20


def test_plain_renders_draw_once_and_composite_the_asked_background():
    pool, state, _ = _pool(2)
    scene = state.scene().detach()
    renders = PlainRenders("torch")
    for bg in ((1.0, 1.0, 1.0), (0.2, 0.9, 0.4)):
        got = renders(scene, pool.cameras, bg)
        assert torch.equal(got, render(scene, pool.cameras, background=bg, backend="torch").rgb)
    assert len(renders._images) == 2  # one per (scene, camera), whatever the background


def test_pool_shrinks_to_its_memory_budget_and_refresh_replaces_the_oldest_view():
    pool, _, _ = _pool(12, budget_mb=1e-6, min_size=4)
    assert len(pool) == 4  # the first view's size left room for none: the smallest pool
    before = pool.cameras.viewmats.clone()
    pool.refresh(torch.Generator().manual_seed(5))
    pool.refresh(torch.Generator().manual_seed(6))
    changed = (pool.cameras.viewmats != before).flatten(1).any(1)
    assert changed.tolist() == [True, True, False, False]
