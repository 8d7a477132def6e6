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


# ---------------------------------------------------------------------------------------------- memory: deltas


def _bits(scene):
    return [t.contiguous().view(torch.int32).clone() for _, t in scene.items()]


def _same_bits(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _part_edit(scene, rows, seed):
    g = torch.Generator().manual_seed(seed)
    sh0 = scene.sh0.clone()
    sh0[rows] += torch.randn(sh0[rows].shape, generator=g)
    return scene.replace(sh0=sh0)


def test_edit_undo_redo_and_a_count_changing_edit_are_bit_identical():
    s0 = random_scene(400, sh_degree=2, seed=30)
    part = torch.arange(400) < 40
    h = History(s0, part.float(), parts={"part": part.float(), "rest": (~part).float()}, name="robot",
                up=(0, -1, 0), up_source="format")
    s1 = _part_edit(s0, part, 31)
    h.push("edit 1", scene=s1)
    # densify and prune: rows 0..39 split in two, rows 390.. pruned, two new Gaussians
    sources = torch.cat([torch.arange(40).repeat_interleave(2), torch.arange(40, 390), torch.tensor([-1, -1])])
    grown = s1.subset(sources.clamp(min=0))
    s2 = _part_edit(grown, torch.arange(len(sources)) < 80, 32)
    h.push("edit 2", scene=s2, mask=torch.ones(len(sources)), row_sources=sources)
    expected = [_bits(s0), _bits(s1), _bits(s2)]
    for _ in range(2):
        for index in (1, 0):
            state = h.undo()
            assert _same_bits(_bits(state.scene), expected[index])
        assert dict(h.current.parts)["part"].shape == (400,) and h.current.name == "robot"
        assert h.current.up == (0.0, -1.0, 0.0) and torch.equal(h.current.mask, part.float())
        for index in (1, 2):
            state = h.redo()
            assert _same_bits(_bits(state.scene), expected[index])
    assert len(h.current.scene) == 432 and dict(h.current.parts)["part"][:80].eq(1).all()
    assert _same_bits(_bits(h.scene_at(0)), expected[0]) and h.current.scene is h.current.scene


def test_history_holds_one_scene_plus_what_edits_changed():
    s0 = random_scene(1500, sh_degree=3, seed=33)
    scene_bytes = sum(t.numel() * t.element_size() for _, t in s0.items())
    h = History(s0)
    scene = s0
    for i in range(10):  # ten edits of a 50-Gaussian part, each with a new small selection
        rows = torch.arange(1500) % 30 == i
        h.push(f"mask {i}", mask=rows.float())
        scene = _part_edit(scene, rows, 40 + i)
        h.push(f"edit {i}", scene=scene)
    # whole scenes per step would hold 11 scenes and 20 dense masks; deltas hold one and the changed rows
    assert h.nbytes() < 1.5 * scene_bytes
    h.undo(), h.undo(), h.undo()
    assert h.nbytes() < 1.5 * scene_bytes  # undone steps keep the newer rows instead, not more


def test_trimmed_history_still_undoes_to_its_oldest_state_exactly():
    s0 = random_scene(50, seed=34)
    h = History(s0, max_states=3)
    scenes = [s0]
    for i in range(5):
        scenes.append(_part_edit(scenes[-1], torch.arange(50) % 5 == i, 50 + i))
        h.push(f"edit {i}", scene=scenes[-1])
    h.undo()
    h.undo()
    assert not h.can_undo and _same_bits(_bits(h.current.scene), _bits(scenes[3]))
    assert _same_bits(_bits(h.redo().scene), _bits(scenes[4]))


def test_a_small_mask_is_stored_packed_and_comes_back_exact():
    h = History(random_scene(1000, seed=35))
    mask = torch.zeros(1000)
    mask[[3, 500, 999]] = torch.tensor([0.25, 1.0, -0.0])  # a -0.0 weight is kept as such
    h.push("mask", mask=mask)
    record = h.records()[-1]
    assert record.packed_mask.dense is None and record.packed_mask.nbytes() < 100
    h.push("clear", mask=None)
    back = h.undo().mask
    assert torch.equal(back.view(torch.int32), mask.view(torch.int32))


def test_a_job_result_is_kept_after_an_undo_and_redo_of_its_start():
    """The regression: undo + redo rebuild the current State object, so a job that compared objects dropped
    its result; states are compared by id, and the result is a plain new entry with no note."""
    s0 = random_scene(6, seed=30)
    h = History(s0, parts=_two_parts())
    start = h.push("mask", mask=_two_parts()["a"])
    h.undo()
    h.redo()
    assert h.current is not start and h.current.id == start.id
    note = h.push_result(start.id, "edit", _edited(s0, 1), torch.ones(6), row_sources=torch.arange(6))
    assert note == "" and h.labels() == ["load scene", "mask", "edit"] and _equal(h.current.scene, _edited(s0, 1))


def test_a_job_result_after_an_undo_follows_its_start_and_after_new_work_goes_on_top():
    s0 = random_scene(6, seed=31)
    rows = torch.tensor([0, 0, 1, 2, 3, 4, 5])  # edit 1 split row 0
    h = History(s0, parts=_two_parts())
    h.push("edit 1", scene=s0.subset(rows), mask=None, row_sources=rows)
    start = h.push("mask", mask=torch.tensor([1.0, 1, 1, 0, 0, 0, 0]))
    result = _edited(s0.subset(rows), 2)
    h.undo()
    h.undo()  # back to the 6-row scene: the result's row map does not fit it
    note = h.push_result(start.id, "edit 2", result, None, row_sources=torch.arange(7))
    assert "undone" in note and "'mask'" in note
    assert h.labels() == ["load scene", "edit 1", "mask", "edit 2"] and _equal(h.current.scene, result)
    assert h.undo().label == "mask"  # undo takes the result back, to the state it started from

    start = h.redo()
    h.push("mask again", mask=torch.ones(7))  # new work meanwhile, on top of the start
    h.push("save part c", parts={**dict(h.current.parts), "c": torch.ones(7)})
    later = _edited(result, 3)
    note = h.push_result(start.id, "edit 3", later, None, row_sources=torch.arange(7))
    assert "moved on" in note and "'save part c'" in note and "'edit 2'" in note
    assert h.labels()[-3:] == ["mask again", "save part c", "edit 3"] and _equal(h.current.scene, later)
    assert [name for name, _ in h.current.parts] == ["a", "b", "c"]  # the part saved meanwhile is kept
    assert h.undo().label == "save part c"


def test_an_owned_result_is_kept_without_a_copy_and_undo_redo_stay_exact():
    s0 = random_scene(300, sh_degree=2, seed=50)
    h = History(s0, owned=True)
    assert h.current.scene is s0  # a scene read for the history alone: not held twice
    rows = torch.arange(300) < 30
    s1 = _part_edit(s0, rows, 51)
    h.push("edit", scene=s1, owned=True)
    assert h.current.scene is s1 and h.current.scene.means is s0.means  # the unchanged parameter stays shared
    expected = [_bits(s0), _bits(s1)]
    assert _same_bits(_bits(h.undo().scene), expected[0]) and _same_bits(_bits(h.redo().scene), expected[1])
    assert _same_bits(_bits(s0), expected[0])  # the undo rebuilt state 0 without writing into the shared tensors
