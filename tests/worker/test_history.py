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
