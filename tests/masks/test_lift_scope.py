"""Lifting in the masks' neighbourhood: far Gaussians are left out, the part's lift is as good as the whole scene's."""

from __future__ import annotations

import torch

from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import ground_truth_masks, orbit_views, part_ious
from engine.masks.galp import galp
from engine.masks.lift_scope import lift_scope
from engine.masks.lift_vote import vote
from engine.masks.views_io import MaskViews
from engine.scene import GaussianScene, random_scene


def _figure_in_a_crowd(toy):
    """The toy figure (one part lifted) with a crowd of Gaussians all around it, far from the part (the views
    of the figure see some of it behind the part; the rest lies out of their frusta)."""
    scene, ids, names = toy
    crowd = random_scene(1500, extent=15.0, scale_range=(0.02, 0.08), seed=5)
    far = (crowd.means.norm(dim=-1) > 2.0)
    crowd = crowd.subset(far)
    both = GaussianScene.concat([scene, crowd.with_sh_degree(scene.sh_degree)])
    return both, torch.cat([ids, torch.full((len(crowd),), -1)]), len(scene)


def test_scope_leaves_the_far_crowd_out_and_lifts_the_part_as_well_as_the_whole_scene(toy):
    scene, ids, num_figure = _figure_in_a_crowd(toy)
    cams = orbit_views(scene.subset(torch.arange(num_figure)), 12, width=40, height=40)
    full = compositing_weights(scene, cams)
    part = 2
    masks = ground_truth_masks(full, (ids == part).long(), 2)[..., 1:]  # the part's mask in each view
    views = MaskViews(cams, masks)

    scope = lift_scope(scene, [views])
    in_scope = torch.zeros(len(scene), dtype=torch.bool)
    in_scope[scope.index] = True
    assert in_scope[ids == part].all()  # the whole part is lifted
    assert in_scope[num_figure:].sum() < 0.8 * (len(scene) - num_figure)  # much of the crowd is not

    labels = (ids != part).long()  # part_ious scores weights[0] against label 0
    for lift in (vote, galp):
        scoped = lift(scene, views)
        whole = lift(scene, views, view_weights=[full])
        assert scoped.weights.shape == (1, len(scene))
        assert not (scoped.weights[0, ~in_scope] > 0).any()
        iou_scoped = part_ious(scoped.weights, labels, 0.5)[0]
        iou_whole = part_ious(whole.weights, labels, 0.5)[0]
        assert iou_scoped > 0.8, (lift.__name__, iou_scoped, iou_whole)
        # as good as the whole scene's lift (better: crowd glimpsed through the mask is not the part)
        assert iou_scoped >= iou_whole - 0.02, (lift.__name__, iou_scoped, iou_whole)
        assert not (scoped.weights[0, num_figure:] > 0.5).any()


def test_empty_masks_lift_nothing(toy):
    scene, _, _ = toy
    cams = orbit_views(scene, 4, width=24, height=24)
    views = MaskViews(cams, torch.zeros(4, 24, 24, 1))
    for lift in (vote, galp):
        result = lift(scene, views)
        assert result.weights.shape == (1, len(scene)) and not result.weights.any()


def test_scope_weights_are_the_whole_scenes_and_coverage_counts_what_is_left_out(toy):
    scene, ids, num_figure = _figure_in_a_crowd(toy)
    cams = orbit_views(scene.subset(torch.arange(num_figure)), 6, width=32, height=32)
    full = compositing_weights(scene, cams)
    masks = ground_truth_masks(full, (ids == 2).long(), 2)[..., 1:]
    scope = lift_scope(scene, [MaskViews(cams, masks)])
    vw = scope.weights[0]
    assert 0 < len(scope.index) < len(scene)

    # every kept weight is the whole scene's weight of that (view, pixel, Gaussian), bit for bit
    N, HW = len(scene), 32 * 32
    key = lambda view, pixel, gauss: (view * HW + pixel) * N + gauss  # noqa: E731
    full_keys, order = torch.sort(key(full.view, full.pixel, full.gauss))
    kept_keys = key(vw.view, vw.pixel, scope.index[vw.gauss])
    at = torch.searchsorted(full_keys, kept_keys).clamp_max(len(full_keys) - 1)
    assert torch.equal(full_keys[at], kept_keys)
    assert torch.equal(full.weight[order[at]], vw.weight)

    # the pixels' opacity counts every Gaussian, the ones left out of the scope too
    rows = vw.row_index
    assert torch.allclose(vw.alpha().reshape(-1)[rows], full.alpha().reshape(-1)[rows], atol=1e-5)
    own = torch.zeros(len(cams) * HW).index_add_(0, vw.view * HW + vw.pixel, vw.weight)[rows]
    assert (own < vw.alpha().reshape(-1)[rows] - 1e-3).any()  # some pixels show Gaussians outside the scope


def test_scope_is_bit_for_bit_the_two_passes_over_the_views_entries(toy):
    """lift_scope sums pass 1 inside the splatting loop and merges pass 1's projection into pass 2: the scope
    is still exactly the plain two passes over each view's entries (compositing_entries), sums in entry order."""
    from engine.masks.compositing import compositing_entries
    from engine.masks.lift_scope import BORDER, CLAIMED, MARGIN, _border_px, _box, _box_regions, _dilate

    scene, ids, num_figure = _figure_in_a_crowd(toy)
    cams = orbit_views(scene.subset(torch.arange(num_figure)), 6, width=32, height=32)
    masks = ground_truth_masks(compositing_weights(scene, cams), (ids == 2).long(), 2)[..., 1:]
    scope = lift_scope(scene, [MaskViews(cams, masks)])
    N, C, HW, border = len(scene), len(cams), 32 * 32, _border_px(cams, BORDER)

    soft = masks.amax(dim=-1).reshape(C, HW)
    around = _dilate(soft.reshape(C, 32, 32) > 0.5, border)
    view, pixel, gauss, weight = compositing_entries(scene, cams, regions=around)
    claimed = torch.zeros(N)
    for c in range(C):
        here = view == c
        inside = torch.zeros(N).index_add_(0, gauss[here], weight[here] * soft[c, pixel[here]])
        total = torch.zeros(N).index_add_(0, gauss[here], weight[here])
        claimed += torch.where((inside >= CLAIMED * total) & (total > 1e-3), inside, torch.zeros(N))
    core = claimed > 0
    means = scene.means.detach()
    box = _box(means[core], claimed[core], MARGIN)
    near = ((means >= box[0]) & (means <= box[1])).all(dim=-1)

    view, pixel, gauss, weight = compositing_entries(scene, cams, regions=around | _box_regions(box, cams, border))
    coverage = torch.stack([torch.zeros(HW).index_add_(0, pixel[view == c], weight[view == c]) for c in range(C)])
    kept = near[gauss]
    assert kept.any() and not kept.all()
    vw = scope.weights[0]
    assert torch.equal(scope.index, near.nonzero().flatten())  # the box's rows (the kept entries' among them)
    for got, want in ((vw.view, view[kept]), (vw.pixel, pixel[kept]), (scope.index[vw.gauss], gauss[kept]),
                      (vw.weight, weight[kept]), (vw.coverage.reshape(C, HW), coverage)):
        assert torch.equal(got, want)
