"""Masked densification rules: clone small, split large, prune transparent, bounded growth, Adam state carried."""

import math

import torch

from engine.optimize.adam import remap_adam_state
from engine.optimize.densify import DensifyConfig, MaskedDensifier


def _params(num=6, scale=0.001, opacity=0.9):
    g = torch.Generator().manual_seed(0)
    return {
        "means": torch.randn(num, 3, generator=g),
        "quats": torch.randn(num, 4, generator=g),
        "scales": torch.full((num, 3), math.log(scale)),
        "opacities": torch.full((num,), math.log(opacity / (1 - opacity))),
        "sh0": torch.randn(num, 1, 3, generator=g),
        "shN": torch.randn(num, 3, 3, generator=g),
    }


def _densifier(num, **kw):
    cfg = DensifyConfig(**{"grow_fraction": 1.0, **kw})
    return MaskedDensifier(cfg, total_steps=100, initial_count=num, scene_scale=1.0)


def _grad_rows(num, rows, value=1.0):
    grad = torch.zeros(1, num, 2)
    grad[0, rows, 0] = value
    return grad


def test_small_high_gradient_gaussians_are_cloned():
    p = _params(scale=0.001)
    d = _densifier(6)
    d.accumulate(_grad_rows(6, [1, 4]), torch.ones(1, 6, dtype=torch.bool), 64, 64)
    r = d.refine(p, fallback_3d=False, generator=torch.Generator().manual_seed(0))
    assert (r.num_cloned, r.num_split, r.num_pruned) == (2, 0, 0)
    assert r.parent.tolist() == [0, 1, 2, 3, 4, 5, 1, 4]
    assert r.appended.tolist() == [False] * 6 + [True] * 2
    for name in p:
        assert torch.equal(r.params[name][:6], p[name]) and torch.equal(r.params[name][6:], p[name][[1, 4]])
    assert float(d.grad_sum.sum()) == 0 and d.grad_sum.shape == (8,)  # statistics reset for the new rows


def test_large_high_gradient_gaussians_are_split_in_place_plus_one_appended():
    p = _params(scale=0.05)
    d = _densifier(6, scale_threshold=0.01)
    d.accumulate(_grad_rows(6, [2]), torch.ones(1, 6, dtype=torch.bool), 64, 64)
    r = d.refine(p, fallback_3d=False, generator=torch.Generator().manual_seed(0))
    assert (r.num_cloned, r.num_split) == (0, 1)
    assert r.parent.tolist() == [0, 1, 2, 3, 4, 5, 2] and r.reset_state.tolist() == [False, False, True] + [False] * 3 + [True]
    shrunk = p["scales"][2] - math.log(1.6)
    assert torch.allclose(r.params["scales"][2], shrunk) and torch.allclose(r.params["scales"][6], shrunk)
    assert not torch.equal(r.params["means"][2], p["means"][2])
    assert (r.params["means"][[2, 6]] - p["means"][2]).norm(dim=-1).max() < 0.05 * 5  # within a few sigmas
    assert torch.equal(r.params["means"][[0, 1, 3, 4, 5]], p["means"][[0, 1, 3, 4, 5]])


def test_low_gradient_or_invisible_rows_do_not_grow():
    p = _params()
    d = _densifier(6, grad_threshold=0.01)
    visible = torch.ones(1, 6, dtype=torch.bool)
    visible[0, 3] = False
    grad = torch.zeros(1, 6, 2)
    grad[0, 0, 0] = 1e-7  # below threshold after NDC normalization (x 32)
    grad[0, 3, 0] = 1.0  # large, but the row was not visible
    d.accumulate(grad, visible, 64, 64)
    r = d.refine(p, fallback_3d=False, generator=torch.Generator())
    assert not r.changed and r.parent.tolist() == list(range(6))


def test_transparent_gaussians_are_pruned_but_never_all():
    p = _params(opacity=0.9)
    p["opacities"][[1, 5]] = -10.0
    r = _densifier(6).refine(p, fallback_3d=False, generator=torch.Generator())
    assert r.num_pruned == 2 and r.parent.tolist() == [0, 2, 3, 4]
    all_low = _params(opacity=0.001)
    r = _densifier(6).refine(all_low, fallback_3d=False, generator=torch.Generator())
    assert r.num_pruned == 0 and len(r.parent) == 6


def test_growth_is_bounded_by_fraction_and_max_growth():
    p = _params(num=10)
    d = MaskedDensifier(DensifyConfig(grow_fraction=0.2), total_steps=100, initial_count=10, scene_scale=1.0)
    d.accumulate(torch.arange(1, 11, dtype=torch.float32).view(1, 10, 1).expand(1, 10, 2).clone(),
                 torch.ones(1, 10, dtype=torch.bool), 64, 64)
    r = d.refine(p, fallback_3d=False, generator=torch.Generator())
    assert r.num_cloned == 2 and r.parent[10:].tolist() == [8, 9]  # the top 20%: the largest gradients
    capped = MaskedDensifier(DensifyConfig(grow_fraction=1.0, max_growth=1.3), total_steps=100, initial_count=10,
                             scene_scale=1.0)
    capped.accumulate(torch.ones(1, 10, 2), torch.ones(1, 10, dtype=torch.bool), 64, 64)
    assert capped.refine(p, fallback_3d=False, generator=torch.Generator()).num_cloned == 3


def test_fallback_statistic_uses_its_own_threshold():
    p = _params()
    d = _densifier(6, grad_threshold=1e9, grad_threshold_3d=0.5)
    grad = torch.zeros(6, 3)
    grad[4] = 1.0
    d.accumulate_3d(grad)
    r = d.refine(p, fallback_3d=True, generator=torch.Generator())
    assert r.num_cloned == 1 and r.parent[-1] == 4


def test_schedule():
    d = MaskedDensifier(DensifyConfig(start_step=20, interval=10, stop_fraction=0.5), total_steps=100,
                        initial_count=1, scene_scale=1.0)
    assert [s + 1 for s in range(100) if d.due(s)] == [20, 30, 40, 50]
    off = MaskedDensifier(DensifyConfig(enabled=False), total_steps=100, initial_count=1, scene_scale=1.0)
    assert not any(off.due(s) for s in range(100))


def test_adam_moments_follow_their_rows_and_new_rows_start_at_zero():
    old = {"means": torch.randn(3, 3, requires_grad=True)}
    opt = torch.optim.Adam([old["means"]], lr=0.1)
    old["means"].grad = torch.ones(3, 3) * torch.tensor([[1.0], [2.0], [3.0]])
    opt.step()
    new = {"means": torch.randn(4, 3, requires_grad=True)}
    new_opt = torch.optim.Adam([new["means"]], lr=0.1)
    remap_adam_state(opt, new_opt, old, new, parent=torch.tensor([0, 2, 1, 2]),
                     reset_state=torch.tensor([False, False, True, True]))
    state, before = new_opt.state[new["means"]], opt.state[old["means"]]
    assert torch.equal(state["exp_avg"][:2], before["exp_avg"][[0, 2]])
    assert bool((state["exp_avg"][2:] == 0).all()) and bool((state["exp_avg_sq"][2:] == 0).all())
    assert torch.equal(state["step"], before["step"])
    new["means"].grad = torch.ones(4, 3)
    new_opt.step()  # the carried state is usable


def test_accumulate_gradients_counts_only_the_trainable_rows_or_falls_back_to_3d():
    """The one adapter both loops call: an edit renders F frozen rows before its M trainable ones (`skip=F`);
    without a screen-space gradient it uses |d loss / d means| and says so."""
    from types import SimpleNamespace

    from engine.optimize.densify import accumulate_gradients

    frozen, trainable = 3, 4
    means2d = torch.zeros(1, frozen + trainable, 2, requires_grad=True)
    means2d.grad = torch.zeros(1, frozen + trainable, 2)
    means2d.grad[0, :, 0] = torch.arange(1.0, 8.0)  # row i pushed with i + 1 pixels
    radii = torch.ones(1, frozen + trainable, dtype=torch.int32)
    radii[0, frozen + 1] = 0  # culled in this view
    cams = SimpleNamespace(width=2, height=2)
    params = {"means": torch.zeros(trainable, 3, requires_grad=True)}
    d = _densifier(trainable)
    assert accumulate_gradients(d, params, means2d, {"radii": radii}, cams, skip=frozen) is False
    assert d.grad_sum.tolist() == [4.0, 0.0, 6.0, 7.0] and d.count.tolist() == [1.0, 0.0, 1.0, 1.0]

    params["means"].grad = torch.tensor([[3.0, 4.0, 0.0]] * trainable)
    d3 = _densifier(trainable)
    assert accumulate_gradients(d3, params, None, {}, cams) is True
    assert d3.grad_sum.tolist() == [5.0] * trainable
    off = MaskedDensifier(DensifyConfig(enabled=False), total_steps=10, initial_count=trainable, scene_scale=1.0)
    assert accumulate_gradients(off, params, means2d, {"radii": radii}, cams, skip=frozen) is False
    assert off.grad_sum.sum() == 0


def test_only_prunable_rows_are_pruned():
    """A faint row the caller protects (an input Gaussian the edit did not fade) survives the prune."""
    p = _params(opacity=0.9)
    p["opacities"][[1, 5]] = -10.0
    prunable = torch.tensor([True, False, True, True, True, True])
    r = _densifier(6).refine(p, fallback_3d=False, generator=torch.Generator(), prunable=prunable)
    assert r.num_pruned == 1 and r.parent.tolist() == [0, 1, 2, 3, 4]
