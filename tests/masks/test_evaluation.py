import pytest
import torch

from engine.masks.evaluation import corrupt_masks, corrupt_views, iou, part_ious, sphere_views


def _masks():
    m = torch.zeros(8, 20, 20, 2)
    m[:, 4:10, 4:16, 0] = 1.0  # part 0 on top of part 1: they touch at row 10
    m[:, 10:16, 4:16, 1] = 1.0
    return m


@pytest.mark.parametrize("kind", ["erode", "dilate", "shift", "drop", "flip", "bleed", "wrong"])
def test_each_corruption_changes_only_the_chosen_views(kind):
    masks = _masks()
    out, bad = corrupt_masks(masks, 0.25, seed=3, kinds=(kind,))
    assert len(bad) == 2
    for c in range(8):
        changed = not torch.equal(out[c], masks[c])
        assert changed == (c in bad)
    c = bad[0]
    m, o = masks[c, :, :, 0], out[c, :, :, 0]
    if kind == "erode":
        assert 0 < o.sum() < m.sum() and (o <= m).all()
    elif kind == "dilate":
        assert o.sum() > m.sum() and (o >= m).all()
    elif kind == "drop":
        assert o.sum() == 0
    elif kind == "flip":
        assert torch.equal(o, 1 - m)
    elif kind == "shift":
        assert 0 < o.sum() <= m.sum() and not torch.equal(o, m)
        assert iou(o.flatten() > 0.5, m.flatten() > 0.5) < 1.0
    elif kind == "wrong":
        assert torch.equal(o, masks[c, :, :, 1])  # the other part's mask
    else:  # bleed: grows into the touching part only
        assert (o >= m).all() and o.sum() > m.sum()
        assert ((o - m) <= masks[c, :, :, 1]).all()


def test_no_corruption_at_zero_fraction():
    masks = _masks()
    out, bad = corrupt_masks(masks, 0.0)
    assert bad == [] and torch.equal(out, masks)


def test_iou():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(torch.zeros(3), torch.zeros(3)) == 1.0
    weights = torch.tensor([[0.9, 0.6, 0.1, 0.0], [0.1, 0.4, 0.9, 1.0]])
    assert part_ious(weights, torch.tensor([0, 0, 1, 1]), 0.5) == [1.0, 1.0]
    assert part_ious(weights, torch.tensor([0, 1, 1, 1]), 0.5) == [0.5, pytest.approx(2 / 3)]


def test_unknown_corruption_is_refused():
    with pytest.raises(ValueError, match="unknown corruption 'melt'"):
        corrupt_masks(_masks(), 0.5, kinds=("melt",))


def test_corrupt_views_picks_views_across_sizes():
    groups = [_masks()[:5], _masks()[:3]]
    out, bad = corrupt_views(groups, 0.5, seed=1, kinds=("drop",))
    assert len(bad) == 4 and all(0 <= v < 8 for v in bad)
    flat_in, flat_out = torch.cat(groups), torch.cat(out)
    for v in range(8):
        assert (flat_out[v].sum() == 0) == (v in bad)
    assert torch.equal(flat_in, torch.cat(groups))  # inputs untouched


def test_sphere_views_cover_the_sphere_at_several_sizes(toy):
    scene, ids, names = toy
    groups = sphere_views(scene, 60, sizes=(32, 48), seed=5)
    assert sorted(g.width for g in groups) == [32, 48] and sum(len(g) for g in groups) == 60
    assert all(g.width == g.height for g in groups)
    lo, hi = scene.bounding_box(quantile=0.01)
    centres = torch.cat([g.centers for g in groups]) - (lo + hi) / 2
    assert (centres[:, 2] < 0).float().mean() > 0.3  # below the object too
    distance = centres.norm(dim=-1)
    assert distance.max() / distance.min() > 1.5  # varied distances
    again = sphere_views(scene, 60, sizes=(32, 48), seed=5)
    assert torch.equal(again[0].viewmats, groups[0].viewmats)
