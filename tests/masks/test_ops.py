import pytest
import torch

from engine.masks.ops import add, grow, intersect, invert, remove_islands, shrink, subtract


def test_boolean_algebra_is_exact_on_hard_masks():
    a = torch.tensor([1.0, 1.0, 0.0, 0.0])
    b = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert add(a, b).tolist() == [1, 1, 1, 0]
    assert subtract(a, b).tolist() == [0, 1, 0, 0]
    assert intersect(a, b).tolist() == [1, 0, 0, 0]
    assert invert(a).tolist() == [0, 0, 1, 1]
    soft = torch.tensor([0.3, 0.8, 0.5, 0.0])
    assert add(soft, b).tolist() == pytest.approx([1.0, 0.8, 1.0, 0.0])
    assert subtract(soft, b).tolist() == pytest.approx([0.0, 0.8, 0.0, 0.0])
    with pytest.raises(ValueError):
        add(a, torch.ones(3))


def _line(n=20):
    return torch.stack([torch.arange(n).float() * 0.1, torch.zeros(n), torch.zeros(n)], dim=-1)


def test_grow_and_shrink_move_the_border_by_neighbours():
    means = _line()
    mask = torch.zeros(20)
    mask[8:12] = 1.0
    grown = grow(mask, means, k=2, steps=1)
    assert grown.nonzero().flatten().tolist() == list(range(7, 13))
    assert grow(mask, means, k=2, steps=3).nonzero().flatten().tolist() == list(range(5, 15))
    assert shrink(grown, means, k=2).nonzero().flatten().tolist() == list(range(8, 12))
    assert shrink(mask, means, k=2).nonzero().flatten().tolist() == [9, 10]


def test_remove_islands_drops_small_far_groups():
    g = torch.Generator().manual_seed(0)
    big = torch.rand(200, 3, generator=g) * 0.5
    far = torch.rand(4, 3, generator=g) * 0.05 + 3.0
    means = torch.cat([big, far, torch.tensor([[10.0, 10.0, 10.0]])])
    mask = torch.ones(len(means))
    mask[:10] = 0.2  # soft, below the threshold: left alone
    out = remove_islands(mask, means)
    assert out[200:].sum() == 0
    assert torch.equal(out[:200], mask[:200])
    kept = remove_islands(mask, means, min_size=3)
    assert kept[200:204].sum() == 4 and kept[204] == 0
