"""Undo/redo restores exact parameters; the history keeps mask, parts, name and up per state."""

import pytest
import torch

from engine.scene import random_scene
from engine.worker.history import History


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))


def _edited(scene, seed):
    g = torch.Generator().manual_seed(seed)
    return scene.replace(sh0=scene.sh0 + torch.randn(scene.sh0.shape, generator=g))


def test_undo_redo_round_trip_is_exact():
    s0 = random_scene(50, sh_degree=1, seed=1)
    h = History(s0)
    m1 = torch.rand(50)
    h.push("mask", mask=m1)
    s2 = _edited(s0, 2)
    h.push("edit", scene=s2)
    assert h.labels() == ["load scene", "mask", "edit"]
    assert h.current.mask is not None and torch.equal(h.current.mask, m1)  # an edit keeps the mask
    assert _equal(h.undo().scene, s0) and torch.equal(h.current.mask, m1)
    assert _equal(h.undo().scene, s0) and h.current.mask is None
    assert not h.can_undo
    with pytest.raises(IndexError, match="nothing to undo"):
        h.undo()
    assert _equal(h.redo().scene, s0) and _equal(h.redo().scene, s2)
    with pytest.raises(IndexError, match="nothing to redo"):
        h.redo()


def test_history_copies_inputs_and_shares_scene_on_mask_changes():
    s0 = random_scene(20, seed=3)
    h = History(s0)
    original = s0.clone()
    s0.means.add_(1.0)  # the caller mutates its tensor after handing it over
    assert _equal(h.current.scene, original)
    h.push("mask a", mask=torch.ones(20))
    assert h.current.scene is h.states()[0].scene


def test_new_action_drops_redo_and_old_states_are_trimmed():
    s0 = random_scene(10, seed=4)
    h = History(s0, max_states=3)
    for i in range(4):
        h.push(f"edit {i}", scene=_edited(s0, i))
    assert h.labels() == ["edit 1", "edit 2", "edit 3"]
    h.undo()
    h.push("other", scene=_edited(s0, 9))
    assert h.labels() == ["edit 1", "edit 2", "other"] and not h.can_redo


def test_push_refuses_mask_of_wrong_length():
    h = History(random_scene(10, seed=5))
    with pytest.raises(ValueError, match="mask has 3 weights but the scene has 10"):
        h.push("mask", mask=torch.ones(3))
    assert h.labels() == ["load scene"]


# ---------------------------------------------------------------------------------------------- up axis


def test_up_is_part_of_each_state_and_undo_brings_the_previous_one_back():
    s0 = random_scene(10, seed=20)
    h = History(s0, up=(0.0, -2.0, 0.0), up_source="format")
    assert h.current.up == (0.0, -1.0, 0.0) and h.current.up_source == "format"  # made unit
    h.push("up axis +z", up=(0, 0, 1), up_source="user")
    assert h.current.up == (0.0, 0.0, 1.0) and h.current.up_source == "user"
    assert h.current.scene is h.states()[0].scene  # an up change copies no scene
    h.push("mask", mask=torch.ones(10))
    assert h.current.up == (0.0, 0.0, 1.0)  # other changes keep it
    h.undo()
    h.undo()
    assert h.current.up == (0.0, -1.0, 0.0) and h.current.up_source == "format"
    h.redo()
    assert h.current.up == (0.0, 0.0, 1.0) and h.current.up_source == "user"


def test_a_history_without_an_up_is_plus_z_default_and_bad_ups_are_refused():
    h = History(random_scene(5, seed=21))
    assert h.current.up == (0.0, 0.0, 1.0) and h.current.up_source == "default"
    with pytest.raises(ValueError, match="up source"):
        h.push("up", up=(1, 0, 0), up_source="guessed")
    with pytest.raises(ValueError, match="up source"):
        h.push("up", up=(1, 0, 0))  # a new up needs its source
    with pytest.raises(ValueError, match="usable direction"):
        h.push("up", up=(0, 0, 0), up_source="user")
    assert h.labels() == ["load scene"]


# ---------------------------------------------------------------------------------------------- parts across an edit


def _two_parts(n=6):
    a = torch.tensor([1.0] * (n // 2) + [0.0] * (n - n // 2))
    return {"a": a, "b": 1 - a}


def test_parts_follow_an_edits_rows_children_stay_pruned_leave_new_ones_join_the_edited_part():
    s0 = random_scene(6, seed=22)
    h = History(s0, parts=_two_parts())
    h.push("mask", mask=_two_parts()["a"])  # the edit works on part a
    # The edit split row 0 in two, pruned row 1 and added one Gaussian in empty space (last).
    row_sources = torch.tensor([0, 0, 2, 3, 4, 5, -1])
    edited = s0.subset(torch.tensor([0, 0, 2, 3, 4, 5, 0]))
    h.push("edit", scene=edited, mask=torch.ones(7), row_sources=row_sources)
    parts = dict(h.current.parts)
    assert list(parts) == ["a", "b"]
    assert parts["a"].tolist() == [1, 1, 1, 0, 0, 0, 1] and parts["b"].tolist() == [0, 0, 0, 1, 1, 1, 0]
    h.undo()
    assert dict(h.current.parts)["a"].shape == (6,)  # undo brings the input's parts back


def test_new_rows_take_each_parts_mask_weighted_share_and_no_mask_means_no_part():
    s0 = random_scene(6, seed=23)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])  # half in a, half in b
    h = History(s0, mask, parts=_two_parts())
    h.push("edit", scene=s0.subset(torch.arange(7) % 6), mask=torch.ones(7),
           row_sources=torch.tensor([0, 1, 2, 3, 4, 5, -1]))
    parts = dict(h.current.parts)
    assert parts["a"][-1].item() == pytest.approx(0.5) and parts["b"][-1].item() == pytest.approx(0.5)
    bare = History(s0, parts=_two_parts())  # nothing was masked: a new row belongs to no part
    bare.push("edit", scene=s0.subset(torch.arange(7) % 6), mask=None, row_sources=torch.tensor([0, 1, 2, 3, 4, 5, -1]))
    assert [w[-1].item() for _, w in bare.current.parts] == [0.0, 0.0]


def test_without_a_row_map_parts_survive_only_a_change_that_keeps_the_count():
    s0 = random_scene(6, seed=24)
    h = History(s0, parts=_two_parts())
    h.push("same count", scene=_edited(s0, 1))
    assert [n for n, _ in h.current.parts] == ["a", "b"]
    h.push("grown", scene=s0.subset(torch.arange(7) % 6))
    assert h.current.parts == ()


def test_bad_row_maps_are_refused_and_change_nothing():
    s0 = random_scene(6, seed=25)
    h = History(s0, parts=_two_parts())
    grown = s0.subset(torch.arange(7) % 6)
    for bad, match in [(torch.tensor([0, 1, 2]), "7 integer row indices"),
                       (torch.tensor([0, 1, 2, 3, 4, 5, 6]), r"\[0, 6\)"),
                       (torch.tensor([0, 1, 2, 3, 4, 5, -2]), r"\[0, 6\)"),
                       (torch.zeros(7), "integer")]:
        with pytest.raises(ValueError, match=match):
            h.push("edit", scene=grown, row_sources=bad)
    with pytest.raises(ValueError, match="not both"):
        h.push("edit", scene=grown, parts={}, row_sources=torch.arange(7) % 6)
    assert h.labels() == ["load scene"]
