"""A part drawn over a cached frozen view is the full render of frozen + part: same picture bit for bit, same
gradients for the part, also after the part moved; the cached view keeps fewer rows than its frustum holds."""

from __future__ import annotations

import numpy as np
import torch

from engine.camera import orbit_cameras
from engine.render.cpu import render_cpu
from engine.render.frozen_view import FrozenView, render_over_frozen
from engine.scene import PARAM_NAMES, GaussianScene
from render_scenes import random_view_scene


def _split(seed: int):
    """(frozen, part leaves): a dense random scene (opaque enough that pixels saturate) and a random tenth of
    its rows as the part, interleaved in depth with the rest."""
    scene = random_view_scene(3000, seed=seed, sh_degree=2, dtype=torch.float32, scale_range=(0.05, 0.2),
                              opacity_range=(0.6, 0.99))
    chosen = torch.rand(len(scene), generator=torch.Generator().manual_seed(seed)) < 0.1
    part = {name: t[chosen].clone().requires_grad_(True) for name, t in scene.items()}
    return scene.subset(~chosen), part


def _cameras():
    return orbit_cameras(torch.zeros(3), 3.0, [20.0, 140.0], [15.0, -30.0], width=64, height=48, fov_y_deg=25.0)


def _full(frozen: GaussianScene, part: dict, cameras, background):
    leaves = {name: t.detach().clone().requires_grad_(True) for name, t in part.items()}
    scene = GaussianScene.trusted(**{n: torch.cat([getattr(frozen, n), leaves[n]]) for n in PARAM_NAMES})
    return render_cpu(scene, cameras, sh_degree=2, background=background), leaves


def _check(frozen, part, views, cameras, background=(0.2, 0.5, 0.9)):
    out = render_over_frozen(views, part, background)
    full, leaves = _full(frozen, part, cameras, background)
    for name in ("rgb", "alpha", "depth"):
        assert torch.equal(getattr(out, name), getattr(full, name)), name
    weights = torch.rand(out.rgb.shape, generator=torch.Generator().manual_seed(3))
    ((out.rgb * weights).sum() + out.alpha.sum()).backward()
    ((full.rgb * weights).sum() + full.alpha.sum()).backward()
    for name in PARAM_NAMES:
        assert part[name].grad.abs().sum() > 0, name
        assert torch.allclose(part[name].grad, leaves[name].grad, rtol=1e-4, atol=1e-6), name  # summed in another order
        part[name].grad = None


def test_part_over_frozen_views_is_the_full_render_also_after_the_part_moves():
    frozen, part = _split(seed=0)
    cameras = _cameras()
    views = [FrozenView(frozen, cameras[0:1], sh_degree=2, allowed=np.zeros(12, bool)),  # no tile kept: grown
             FrozenView(frozen, cameras[1:2], sh_degree=2)]
    _check(frozen, part, views, cameras)
    assert 0 < views[0].allowed.sum() < 12 or views[0].allowed.all()
    # a shape edit: the part moves, grows and changes colour; the cached views stay valid
    with torch.no_grad():
        part["means"] += torch.tensor([0.15, -0.1, 0.05])
        part["scales"] += 0.3
        part["sh0"] += 0.2
    _check(frozen, part, views, cameras, background=None)
    # the cut at saturated tiles leaves out rows that are in the view (else nothing is saved)
    seen = render_cpu(frozen, cameras[1:2], sh_degree=2).meta["radii"][0].gt(0).all(-1).sum()
    assert views[1].num_rows < 0.8 * int(seen)


def test_a_part_outside_the_view_leaves_the_frozen_picture():
    frozen, part = _split(seed=1)
    cameras = _cameras()[0:1]
    view = FrozenView(frozen, cameras, sh_degree=2)
    with torch.no_grad():
        part["means"] += 50.0  # far out of the frustum: no tile touched
    out = render_over_frozen([view], part)
    assert torch.equal(out.rgb, render_cpu(frozen, cameras, sh_degree=2).rgb)


def test_a_view_of_a_scenes_frozen_rows_read_in_place_is_the_view_of_their_copy():
    scene, part = _split(seed=2)  # the scene the edit started from: its rows `chosen` are its part
    chosen = torch.rand(len(scene), generator=torch.Generator().manual_seed(5)) < 0.1
    cameras = _cameras()[1:2]
    by_index = FrozenView(scene, cameras, sh_degree=2, rows=~chosen)
    copied = FrozenView(scene.subset(~chosen), cameras, sh_degree=2)
    for name in ("out", "T_final", "offsets", "ids", "keys", "allowed"):
        assert np.array_equal(getattr(by_index, name), getattr(copied, name)), name
    assert all(np.array_equal(a, b) for a, b in zip(by_index.rows, copied.rows))
    _check(scene.subset(~chosen), part, [by_index], cameras)
