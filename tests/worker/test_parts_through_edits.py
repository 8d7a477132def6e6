"""A saved part survives a densifying edit, its undo and an autosave restore (issue 26, item 2).

The part mixes masked and unmasked Gaussians. Only colour moves in the edit (geometry learning rates 0) and it
only clones (the two faint Gaussians of the part stay: an edit deletes only rows it added or faded, issue 24;
pruned rows leaving a part are tested on the history's row map in test_history.py), so every Gaussian of the result stands exactly where its ancestor stood: the test finds each
result row's ancestor by position, without the edit's row map, and checks that the part followed it.
"""

import pytest
import torch

from engine.edit import EditConfig, LearningRates
from engine.guidance.closed_form import ClosedFormPrior
from engine.optimize import DensifyConfig
from engine.worker import EngineWorker
from tests.edit.scenes import params_equal, two_part_scene


def _loader(spec, device=None):
    return ClosedFormPrior((1.0, 0.0, 0.0))


def _densifying_edit() -> EditConfig:
    """A shape edit that clones the masked rows with the largest gradients twice (faint input rows are kept)."""
    return EditConfig(prompt="red", model="closed-form:red", steps=8, resolution=32, preview_every=0, edit="shape",
                      lr=LearningRates(means=0.0, scales=0.0, quats=0.0, opacities=0.0),
                      densify=DensifyConfig(start_step=3, interval=3, grad_threshold=0.0, grow_fraction=0.5,
                                            scale_threshold=10.0, prune_opacity=0.3))


@pytest.fixture
def edited_session(tmp_path):
    """(worker, workspace, input scene, mask, part) after one densifying edit of session "s"."""
    scene, part_ids, _ = two_part_scene(60)
    mask = (part_ids == 0).float()  # the head (rows 0-59) is edited
    faint = torch.tensor([0, 1])  # two masked rows of the part, fainter than prune_opacity: the edit must keep them
    scene = scene.replace(opacities=scene.opacities.index_fill(0, faint, -1.5))
    chest = torch.zeros(len(scene))
    chest[:40] = 1.0  # most of the head (masked) ...
    chest[60:90] = 1.0  # ... and half of the body (unmasked)
    workspace = tmp_path / "ws"
    worker = EngineWorker(workspace=workspace, model_loader=_loader, device="cpu")
    try:
        worker.load_scene("s", scene, parts={"chest": chest}, name="robot").result(30)
        worker.set_mask("s", mask).result(30)
        result = worker.start_edit("s", _densifying_edit()).result(120)
        assert not result.cancelled and result.num_cloned > 0 and result.num_pruned == 0
        yield worker, workspace, scene, mask, chest
    finally:
        worker.shutdown()


def _ancestors(edited, scene) -> torch.Tensor:  # [N'] the input row at each result row's position
    same_place = (edited.means[:, None] == scene.means[None]).all(dim=-1)  # [N', N]
    assert bool((same_place.sum(dim=1) == 1).all())  # nothing moved, nothing came from nowhere
    return same_place.float().argmax(dim=1)


def _check_part_followed_the_edit(state, scene, chest) -> None:
    part = state.parts["chest"]
    assert part.shape == (len(state.scene),) and len(state.scene) != len(scene)
    ancestor = _ancestors(state.scene, scene)
    assert torch.equal(part, chest[ancestor])  # every Gaussian is in the part exactly when its ancestor was
    unmasked = torch.arange(60, 90)
    kept = torch.isin(ancestor, unmasked)
    assert int(kept.sum()) == 30 and params_equal(state.scene.subset(kept), scene.subset(ancestor[kept]))
    children = torch.bincount(ancestor, minlength=len(scene))
    assert int(children[:40].max()) > 1  # some of the part's masked Gaussians were cloned, the clones joined
    assert int(children[[0, 1]].min()) >= 1 and bool(part[torch.isin(ancestor, torch.tensor([0, 1]))].all())
    assert int(part.sum()) == int(children[:40].sum()) + 30


def test_a_part_follows_a_densifying_edit_and_undo_brings_the_old_one_back(edited_session):
    worker, _, scene, mask, chest = edited_session
    _check_part_followed_the_edit(worker.current("s").result(10), scene, chest)
    worker.undo("s").result(10)
    before = worker.current("s").result(10)
    assert params_equal(before.scene, scene) and torch.equal(before.parts["chest"], chest)
    worker.redo("s").result(10)
    _check_part_followed_the_edit(worker.current("s").result(10), scene, chest)


def test_the_part_after_an_edit_survives_an_autosave_restore(edited_session):
    worker, workspace, scene, _, chest = edited_session
    worker.shutdown()
    fresh = EngineWorker(workspace=workspace, model_loader=_loader, device="cpu")
    try:
        fresh.restore_session("t", "s").result(30)
        _check_part_followed_the_edit(fresh.current("t").result(10), scene, chest)
        fresh.undo("t").result(10)
        assert torch.equal(fresh.current("t").result(10).parts["chest"], chest)
    finally:
        fresh.shutdown()
