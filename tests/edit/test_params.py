"""The step rules' bookkeeping: which rows an edit may delete (only the ones it added or faded)."""

import torch

from engine.edit import EditConfig, run_edit
from engine.edit.params import MaskedParams, drop_faint
from engine.guidance.closed_form import ClosedFormPrior
from tests.edit.scenes import two_part_scene


def _faint_head(faint_rows=(0, 3, 7), opacity=0.003):
    scene, part_ids, _ = two_part_scene(40)
    opacities = scene.opacities.clone()
    opacities[list(faint_rows)] = torch.logit(torch.tensor(opacity))
    return scene.replace(opacities=opacities), (part_ids == 0).float()


def test_faint_input_rows_are_kept_faded_and_added_rows_go():
    scene, mask = _faint_head()
    state = MaskedParams(scene, mask, 0.5)
    assert not bool(state.prunable().any())  # nothing the edit did yet
    with torch.no_grad():
        state.params["opacities"][10] = -8.0  # the edit faded this one (a removal)
    assert state.prunable().nonzero().flatten().tolist() == [10]
    dropped = drop_faint(state, EditConfig(prompt="x"))
    assert dropped == 1 and state.num_trainable == 39
    assert {0, 3, 7} <= set(state.origin.tolist())  # the capture's own faint Gaussians stay


def test_appearance_edit_keeps_faint_input_gaussians():
    scene, mask = _faint_head()
    config = EditConfig(prompt="x", steps=3, resolution=16, preview_every=0, edit="appearance")
    result = run_edit(scene, mask, config, ClosedFormPrior((0.9, 0.1, 0.1)))
    assert len(result.scene) == len(scene) and result.num_pruned == 0
    assert torch.equal(result.scene.opacities, scene.opacities)
