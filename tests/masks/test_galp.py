import numpy as np
import torch

from engine.masks.evaluation import corrupt_masks, orbit_views, part_ious
from engine.masks.galp import GalpConfig, _fill_unseen, _uncertainty, galp, suggest_threshold
from engine.masks.views_io import MaskViews


def test_interior_gaussians_follow_the_enclosing_surface(shell):
    scene, inner = shell
    cams = orbit_views(scene, 8, width=32, height=32)
    result = galp(scene, MaskViews(cams, torch.ones(8, 32, 32)), config=GalpConfig(steps=40))
    assert (result.visibility[inner] < 1e-3).all()
    assert result.weights[0, inner].min() > 0.8  # voting gives them 0 (see test_lift_vote)
    assert result.weights[0, ~inner].mean() > 0.9
    assert (result.uncertainty[inner] == 1).all()


def test_a_flipped_view_loses_the_trust_of_the_others(toy, toy_views):
    scene, ids, names = toy
    cams, vw, gt = toy_views
    masks = gt.clone()
    masks[5] = 1.0 - masks[5]  # SAM picked the background in view 5
    masks[9, :, :, 2] = 0.0  # and missed the head in view 9
    result = galp(scene, MaskViews(cams, masks), view_weights=[vw], config=GalpConfig(steps=60))
    trust = result.view_trust[0]  # [C, P]
    assert trust[5].max() < 0.2 and trust[9, 2] < 0.2
    others = [c for c in range(len(cams)) if c not in (5, 9)]
    assert trust[others].median() > 0.9
    assert np.mean(part_ious(result.weights, ids, result.threshold)) > 0.95


def test_views_of_two_sizes_are_fitted_together(toy):
    scene, ids, names = toy
    big = orbit_views(scene, 6, width=40, height=40)
    small = orbit_views(scene, 6, width=24, height=20)
    from engine.masks.contrib import compositing_weights
    from engine.masks.evaluation import ground_truth_masks

    groups = [MaskViews(c, ground_truth_masks(compositing_weights(scene, c), ids, 5)) for c in (big, small)]
    result = galp(scene, groups, config=GalpConfig(steps=40))
    assert result.weights.shape == (5, len(scene))
    assert len(result.view_trust) == 2
    assert np.mean(part_ious(result.weights, ids, 0.5)) > 0.85


def test_loss_decreases(toy, toy_views):
    scene, ids, names = toy
    cams, vw, gt = toy_views
    masks, _ = corrupt_masks(gt, 0.25, seed=4)
    result = galp(scene, MaskViews(cams, masks), view_weights=[vw], config=GalpConfig(steps=30))
    assert result.losses[-1] < 0.5 * result.losses[0]


def test_uncertainty_ranks_labels_between_prototypes_and_hidden_gaussians_first():
    dc = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    evidence_var = torch.tensor([0.0, 0.0, 0.2, 0.0, 0.0])
    visibility = torch.tensor([5.0, 5.0, 5.0, 0.01, 0.0])
    seen = visibility > 1e-3
    u = _uncertainty(dc, evidence_var, visibility, seen, temperature=0.1)
    assert u[4] == 1.0  # unseen
    assert u[0] < 0.15 and u[1] < 0.15
    assert u[2] > 0.3 and u[3] > 0.8  # between prototypes / barely visible


def test_fill_unseen_takes_the_nearest_seen_labels():
    means = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5.0, 0, 0], [5.1, 0, 0], [0.05, 0.02, 0], [5.05, 0.01, 0]])
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.5], [0.5]])
    seen = torch.tensor([True, True, True, True, False, False])
    out = _fill_unseen(labels.clone(), seen, means, k=2)
    torch.testing.assert_close(out[4:], torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(out[:4], labels[:4])


def test_suggested_threshold_separates_two_modes_and_stays_in_bounds():
    g = torch.Generator().manual_seed(0)
    low = torch.rand(500, generator=g) * 0.15
    high = 0.8 + torch.rand(200, generator=g) * 0.2
    t = suggest_threshold(torch.cat([low, high])[None])
    assert 0.3 <= t <= 0.7 and float(low.max()) < t < float(high.min())
    assert 0.3 <= suggest_threshold(torch.full((1, 10), 0.95)) <= 0.7
    assert suggest_threshold(torch.zeros(1, 0)) == 0.5
