"""A scene step stores only the rows that differ and rebuilds either side bit for bit."""

import torch

from engine.scene import GaussianScene, random_scene
from engine.worker.deltas import SceneStep, same_rows


def _bits_equal(a, b) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and torch.equal(x.contiguous().view(torch.int32), y.contiguous().view(torch.int32))
        for (_, x), (_, y) in zip(a.items(), b.items()))


def _scene_bytes(scene) -> int:
    return sum(t.numel() * t.element_size() for _, t in scene.items())


def test_same_count_change_stores_changed_rows_and_round_trips_exactly():
    before = random_scene(500, sh_degree=2, seed=1)
    sh0 = before.sh0.clone()
    sh0[10:30] += 0.25
    means = before.means.clone()
    means[400, 0] = -0.0 if float(means[400, 0]) == 0.0 else means[400, 0]
    means[401, 1] = 0.0
    after = before.replace(sh0=sh0, means=means)
    after.means[401, 1] = -0.0  # a sign bit alone is a change undo must restore
    step = SceneStep(before, after)
    assert set(step.changed.tolist()) == set(range(10, 30)) | {401}
    assert step.nbytes() < _scene_bytes(before) / 10
    back = step.back(after)
    assert _bits_equal(back, before)
    assert _bits_equal(step.forward(back), after)


def test_count_changing_edit_with_row_sources_round_trips_exactly():
    before = random_scene(300, sh_degree=1, seed=2)
    keep = torch.arange(300) % 7 != 0  # pruned rows
    sources = torch.cat([torch.nonzero(keep).flatten(), torch.tensor([100, 100, 150, -1, -1])])  # clones, new rows
    g = torch.Generator().manual_seed(3)
    extra = random_scene(2, sh_degree=1, seed=4)
    rows = before.subset(sources[:-2])
    edited_rows = torch.zeros(len(rows), dtype=torch.bool)
    edited_rows[:12] = True  # a part of the kept rows changes colour
    sh0 = torch.where(edited_rows[:, None, None], rows.sh0 + torch.randn(rows.sh0.shape, generator=g), rows.sh0)
    after = GaussianScene.concat([rows.replace(sh0=sh0), extra])
    step = SceneStep(before, after, sources)
    only_before, only_after = step.unique
    assert len(only_before) == int((~keep).sum()) + 12  # pruned rows and the edited originals
    assert len(only_after) == 12 + 2  # edited rows and the two new ones
    for _ in range(2):
        back = step.back(after)
        assert _bits_equal(back, before)
        after = step.forward(back)
    assert len(after) == len(sources)


def test_incomparable_scenes_keep_the_other_one_whole():
    before, after = random_scene(40, sh_degree=0, seed=5), random_scene(60, sh_degree=3, seed=6)
    step = SceneStep(before, after)
    assert step.whole and _bits_equal(step.back(after), before)


def test_same_rows_is_bitwise():
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0], [float("nan"), 1.0]])
    b = torch.tensor([[-0.0, 1.0], [2.0, 3.0], [float("nan"), 1.0]])
    assert same_rows(a, b).tolist() == [False, True, True]
