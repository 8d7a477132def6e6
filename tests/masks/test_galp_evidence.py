"""3D-GALP's evidence: the weighted median behind the robust vote, and which views' masks are trusted."""

import numpy as np
import torch

from engine.masks.evaluation import part_ious
from engine.masks.galp import THRESHOLD, GalpConfig, galp
from engine.masks.galp_evidence import _weighted_median
from engine.masks.views_io import MaskViews


def test_a_flipped_view_loses_the_trust_of_the_others(toy, toy_views):
    scene, ids, names = toy
    cams, vw, gt = toy_views
    masks = gt.clone()
    masks[5] = 1.0 - masks[5]  # SAM picked the background in view 5
    masks[9, :, :, 2] = masks[9, :, :, 1]  # and the body instead of the head in view 9
    result = galp(scene, MaskViews(cams, masks), view_weights=[vw], config=GalpConfig(steps=10))
    trust = result.view_trust[0]  # [C, P]
    assert trust[5].max() < 0.2 and trust[9, 2] < 0.2
    others = [c for c in range(len(cams)) if c not in (5, 9)]
    assert trust[others].median() > 0.9
    assert result.threshold == THRESHOLD == 0.5
    assert np.mean(part_ious(result.weights, ids, 0.5)) > 0.95


def test_a_view_wrong_about_most_parts_is_trusted_less_in_each(toy, toy_views):
    """With 3+ parts lifted together, a view whose other masks all disagree with the consensus loses trust in
    the one mask that alone would pass (here: slightly shifted); with one or two parts nothing couples."""
    scene, ids, names = toy
    cams, vw, gt = toy_views
    view, part = 7, 2
    masks = gt.clone()
    for p in range(gt.shape[-1]):
        if p != part:
            masks[view, :, :, p] = 1.0 - gt[view, :, :, p]
    masks[view, :, :, part] = torch.roll(gt[view, :, :, part], shifts=1, dims=1)
    coupled = galp(scene, MaskViews(cams, masks), view_weights=[vw], config=GalpConfig(steps=0)).view_trust[0]
    alone = galp(scene, MaskViews(cams, masks), view_weights=[vw],
                 config=GalpConfig(steps=0, across_parts=0.0)).view_trust[0]
    assert alone[view, part] > 0.5 and coupled[view, part] < 0.5 * alone[view, part]
    others = [c for c in range(len(cams)) if c != view]
    assert coupled[others].median() > 0.9


def test_weighted_median():
    group = torch.tensor([0, 0, 0, 1, 1, 2, 0])
    value = torch.tensor([0.1, 0.9, 0.5, 1.0, 0.0, 0.3, 0.95])
    weight = torch.tensor([1.0, 1, 1, 1, 3, 2, 0.5])
    out = _weighted_median(group, value, weight, 4)
    torch.testing.assert_close(out, torch.tensor([0.5, 0.0, 0.3, 0.0]))  # group 3 is empty
