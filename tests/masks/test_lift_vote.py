import numpy as np
import torch

from engine.camera import orbit_cameras
from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import orbit_views, part_ious
from engine.masks.lift_vote import vote
from engine.masks.views_io import MaskViews
from engine.scene import GaussianScene


def test_vote_is_the_visibility_weighted_share_inside_the_masks():
    scene = GaussianScene.create(
        means=torch.zeros(1, 3), quats=torch.tensor([[1.0, 0, 0, 0]]), scales=torch.full((1, 3), -2.0),
        opacities=torch.tensor([2.0]), sh0=torch.zeros(1, 3),
    )
    cams = orbit_cameras(torch.zeros(3), 2.0, [0.0, 90.0, 180.0], 10.0, width=16, height=16)
    masks = torch.zeros(3, 16, 16)
    masks[0] = 1.0  # the first view says "in", the others "out"
    masks[1, :8] = 1.0  # the second: top half only
    totals = compositing_weights(scene, cams).totals()[:, 0]
    inside_1 = compositing_weights(scene, cams).splat(masks[..., None])[1, 0, 0]
    result = vote(scene, MaskViews(cams, masks))
    expected = (totals[0] + inside_1) / totals.sum()
    torch.testing.assert_close(result.weights[0, 0], expected)
    assert 0.3 < float(expected) < 0.6


def test_clean_masks_give_the_parts(toy, toy_views):
    scene, ids, names = toy
    cams, vw, gt = toy_views
    result = vote(scene, MaskViews(cams, gt), view_weights=[vw])
    assert result.weights.shape == (len(names), len(scene))
    assert result.weights.min() >= 0 and result.weights.max() <= 1
    assert np.mean(part_ious(result.weights, ids, 0.5)) > 0.95


def test_unseen_gaussians_get_nothing(shell):
    scene, inner = shell
    cams = orbit_views(scene, 8, width=32, height=32)
    result = vote(scene, MaskViews(cams, torch.ones(8, 32, 32)))
    assert result.weights[0, ~inner].mean() > 0.95
    assert result.weights[0, inner].max() == 0 and result.visibility[inner].max() < 1e-3
