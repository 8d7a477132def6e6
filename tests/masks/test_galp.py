"""3D-GALP end to end: the lift's outputs, its parts and view batches, and the render fit."""

import numpy as np
import torch

from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import corrupt_masks, ground_truth_masks, orbit_views, part_ious
from engine.masks.galp import GalpConfig, galp
from engine.masks.views_io import MaskViews


def test_parts_are_independent_channels(toy, toy_views):
    """Lifting several parts at once gives each part the weights it gets alone (no hidden coupling)."""
    scene, ids, names = toy
    cams, vw, gt = toy_views
    masks, _ = corrupt_masks(gt, 0.25, seed=210)
    cfg = GalpConfig(steps=6)
    together = galp(scene, MaskViews(cams, masks[..., [2, 4]]), view_weights=[vw], config=cfg).weights
    alone = galp(scene, MaskViews(cams, masks[..., [4]]), view_weights=[vw], config=cfg).weights
    torch.testing.assert_close(together[1], alone[0], atol=1e-4, rtol=0)


def test_views_of_two_sizes_are_fitted_together(toy):
    scene, ids, names = toy
    big = orbit_views(scene, 6, width=40, height=40)
    small = orbit_views(scene, 6, width=24, height=20)
    groups = [MaskViews(c, ground_truth_masks(compositing_weights(scene, c), ids, 5)) for c in (big, small)]
    result = galp(scene, groups, config=GalpConfig(steps=10))
    assert result.weights.shape == (5, len(scene))
    assert [t.shape for t in result.view_trust] == [(6, 5), (6, 5)]
    assert np.mean(part_ious(result.weights, ids, 0.5)) > 0.85


def test_loss_decreases(toy, toy_views):
    scene, ids, names = toy
    cams, vw, gt = toy_views
    masks, _ = corrupt_masks(gt, 0.25, seed=4)
    result = galp(scene, MaskViews(cams, masks), view_weights=[vw], config=GalpConfig(steps=12))
    assert len(result.losses) == 12 and result.losses[-1] < result.losses[0]
