"""The issue's accuracy requirement: with 25% of the views' masks corrupted the way SAM fails, 3D-GALP must
reach a 3D IoU >= 0.90 against the ground-truth parts and beat voting. IoU is over ALL Gaussians (the
hidden ones included) and averaged over the parts. bench/masks.py prints the full table."""

import numpy as np
import pytest
import torch

from engine.masks.contrib import compositing_weights
from engine.masks.evaluation import corrupt_masks, ground_truth_masks, orbit_views, part_ious
from engine.masks.galp import galp
from engine.masks.lift_vote import vote
from engine.masks.views_io import MaskViews


def _scores(scene, ids, cams, vw, masks):
    views = MaskViews(cams, masks)
    voted = vote(scene, views, view_weights=[vw])
    lifted = galp(scene, views, view_weights=[vw])
    return (
        float(np.mean(part_ious(voted.weights, ids, voted.threshold))),
        float(np.mean(part_ious(lifted.weights, ids, lifted.threshold))),
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_toy_figure_with_a_quarter_of_the_views_corrupted(toy, toy_views, seed):
    scene, ids, names = toy
    cams, vw, gt = toy_views
    masks, bad = corrupt_masks(gt, 0.25, seed=seed)
    assert len(bad) == 6
    voted, lifted = _scores(scene, ids, cams, vw, masks)
    assert lifted >= 0.90 and lifted > voted, (voted, lifted)


def test_toy_figure_clean_views(toy, toy_views):
    scene, ids, names = toy
    cams, vw, gt = toy_views
    voted, lifted = _scores(scene, ids, cams, vw, gt)
    assert lifted >= 0.97 and voted >= 0.97


def test_default_scene_with_a_quarter_of_the_views_corrupted():
    from assets.default_scene import load_default_scene

    scene, ids, names = load_default_scene()
    ids = torch.as_tensor(ids).long()
    cams = orbit_views(scene, 24, width=96, height=96)
    vw = compositing_weights(scene, cams)
    masks, _ = corrupt_masks(ground_truth_masks(vw, ids, len(names)), 0.25, seed=1)
    voted, lifted = _scores(scene, ids, cams, vw, masks)
    assert lifted >= 0.90 and lifted > voted + 0.05, (voted, lifted)
