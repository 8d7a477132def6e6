import pytest
import torch

from engine.masks.evaluation import corrupt_masks, iou, part_ious


def _masks():
    m = torch.zeros(8, 20, 20, 2)
    m[:, 4:10, 4:16, 0] = 1.0  # part 0 on top of part 1: they touch at row 10
    m[:, 10:16, 4:16, 1] = 1.0
    return m


@pytest.mark.parametrize("kind", ["erode", "dilate", "drop", "flip", "bleed"])
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
