"""The issue's accuracy targets at test size: views from the whole sphere (below included) at random
distances, aims and sizes; SAM-like corruption of 0 / 25 / 40% of the views; every method cut at 0.5 (GALP's
weights are calibrated, no suggested threshold). IoU per part over the Gaussians some view sees.
Targets (bench/masks.py measures them on the default scene, all parts, several seeds): GALP >= vote on every
part, >= 0.85 up to 25% corrupted views, >= 0.75 at 40%. Seeds here (300+) are neither the bench's report seeds
(0..) nor its tuning seeds (100+)."""

import pytest
import torch

from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import corrupt_views, ground_truth_masks, iou, sphere_views
from engine.masks.galp import galp
from engine.masks.lift_vote import VISIBILITY_EPS, vote
from engine.masks.views_io import MaskViews


def _lift_both(scene, groups, vws, masks):
    views = [MaskViews(c, m) for c, m in zip(groups, masks)]
    return vote(scene, views, view_weights=vws).weights, galp(scene, views, view_weights=vws).weights


def _ious(weights, ids, parts, seen):
    return [iou(weights[i][seen] > 0.5, (ids == p)[seen]) for i, p in enumerate(parts)]


@pytest.fixture(scope="module")
def toy_sphere(toy):
    """The toy figure seen by 24 whole-sphere views of 48 or 64 px: (groups, view weights, masks, seen)."""
    scene, ids, names = toy
    groups = sphere_views(scene, 24, sizes=(48, 64), seed=300)
    vws = [compositing_weights(scene, c) for c in groups]
    gts = [ground_truth_masks(vw, ids, len(names)) for vw in vws]
    seen = sum(vw.totals().sum(0) for vw in vws) > VISIBILITY_EPS
    return groups, vws, gts, seen


@pytest.mark.parametrize("level, floor", [(0.0, 0.95), (0.25, 0.85 + 0.05), (0.4, 0.75 + 0.05)])
def test_toy_figure_every_part_beats_voting_and_the_target(toy, toy_sphere, level, floor):
    scene, ids, names = toy
    groups, vws, gts, seen = toy_sphere
    masks, bad = corrupt_views(gts, level, seed=301)
    assert len(bad) == round(level * 24)
    voted, lifted = _lift_both(scene, groups, vws, masks)
    parts = range(len(names))
    v, g = _ious(voted, ids, parts, seen), _ious(lifted, ids, parts, seen)
    for name, vi, gi in zip(names, v, g):
        assert gi >= floor and gi >= vi - 0.005, (name, vi, gi)
    if level > 0:
        assert min(g) > min(v) + 0.1  # corruption is where voting breaks and GALP holds


def test_small_parts_of_the_default_scene_from_the_whole_sphere():
    """The issue's report: clean whole-sphere views, one small part at a time; GALP at 0.5 had IoU 0.17 (eyes)
    and 0.29 (antenna) where voting had 0.78 / 0.90."""
    from assets.default_scene import load_default_scene

    scene, ids, names = load_default_scene()
    ids = torch.as_tensor(ids).long()
    groups = sphere_views(scene, 16, sizes=(96, 128), seed=302)
    vws = [compositing_weights(scene, c) for c in groups]
    seen = sum(vw.totals().sum(0) for vw in vws) > VISIBILITY_EPS
    parts = [names.index("eyes"), names.index("antenna")]
    for p in parts:
        masks = [ground_truth_masks(vw, ids, len(names))[..., [p]] for vw in vws]
        voted, lifted = _lift_both(scene, groups, vws, masks)
        v, g = _ious(voted, ids, [p], seen)[0], _ious(lifted, ids, [p], seen)[0]
        # On clean views voting is near its best; GALP holds it (tolerance: one or two rim Gaussians).
        assert g >= 0.85 + 0.05 and g >= v - 0.008, (names[p], v, g)


def test_views_that_drop_a_small_part_they_see_largest_lose_trust():
    """The two views that show the eyes largest drop them (a SAM miss): they see mostly head, so an error
    measured over everything they see calls them fine (trust ~1, IoU 0.31 / 0.59 on these seeds); measured over
    the part's area in the view they are wrong, and GALP keeps the eyes."""
    from assets.default_scene import load_default_scene
    from engine.masks.galp import GalpConfig

    scene, ids, names = load_default_scene()
    ids = torch.as_tensor(ids).long()
    p = names.index("eyes")
    groups = sphere_views(scene, 16, sizes=(96, 128), seed=303)
    vws = [compositing_weights(scene, c) for c in groups]
    seen = sum(vw.totals().sum(0) for vw in vws) > VISIBILITY_EPS
    per_group = [ground_truth_masks(vw, ids, len(names))[..., [p]] for vw in vws]
    flat = [(g, c) for g, m in enumerate(per_group) for c in range(len(m))]
    areas = torch.tensor([float(per_group[g][c].sum()) for g, c in flat])
    dropped = areas.argsort(descending=True)[:2].tolist()
    for k in dropped:
        g, c = flat[k]
        per_group[g][c] = 0.0
    views = [MaskViews(cams, m) for cams, m in zip(groups, per_group)]
    relative = galp(scene, views, view_weights=vws)
    absolute = galp(scene, views, view_weights=vws, config=GalpConfig(relative_error=False))
    trust_rel, trust_abs = torch.cat(relative.view_trust)[:, 0], torch.cat(absolute.view_trust)[:, 0]
    assert (trust_rel[dropped] < 0.1).all() and (trust_abs[dropped] > 0.5).all()
    truth = (ids == p)[seen]
    assert iou(relative.weights[0][seen] > 0.5, truth) >= 0.85 > iou(absolute.weights[0][seen] > 0.5, truth)


@pytest.mark.slow  # ~31 s: run with `pytest -m slow`
def test_the_inside_of_the_scarf_seen_only_through_it_stays_scarf():
    """24 whole-sphere views of 128-256 px, clean and 10% corrupted, all 7 parts together. The scarf's inner
    Gaussians are seen only through the scarf, a thousandth of a pixel each, and its rim meets the head and body:
    with the fill's old prior ("not the part" wherever nothing is confident) and a purely spatial fill GALP lost
    them (scarf IoU 0.907 where voting has 0.951 on this seed). The support prior keeps a weak vote where
    confident scarf is near; the appearance kernel keeps the grey head under the red rim out of the scarf."""
    from assets.default_scene import load_default_scene
    from engine.masks.galp import GalpConfig

    scene, ids, names = load_default_scene()
    ids = torch.as_tensor(ids).long()
    groups = sphere_views(scene, 24, sizes=(128, 192, 256), seed=306)
    vws = [compositing_weights(scene, c) for c in groups]
    gts = [ground_truth_masks(vw, ids, len(names)) for vw in vws]
    seen = sum(vw.totals().sum(0) for vw in vws) > VISIBILITY_EPS
    scarf, parts = names.index("scarf"), range(len(names))
    for level in (0.0, 0.1):
        masks, _ = corrupt_views(gts, level, seed=307)
        views = [MaskViews(c, m) for c, m in zip(groups, masks)]
        voted, lifted = _lift_both(scene, groups, vws, masks)
        v, g = _ious(voted, ids, parts, seen), _ious(lifted, ids, parts, seen)
        for name, vi, gi in zip(names, v, g):
            assert gi >= vi, (level, name, vi, gi)
        no_support, spatial = (
            _ious(galp(scene, views, view_weights=vws, config=cfg).weights, ids, [scarf], seen)[0]
            for cfg in (GalpConfig(support=False), GalpConfig(appearance=0.0))
        )
        assert g[scarf] >= 0.85 + 0.08 and g[scarf] > no_support + 0.02 and g[scarf] > spatial + 0.005, (
            level, v[scarf], g[scarf], no_support, spatial)
