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


def test_assemble_puts_every_row_back_in_place_and_new_rows_last():
    scene, part_ids, _ = two_part_scene(40)
    mask = (part_ids == 0).float()
    state = MaskedParams(scene, mask, 0.5)
    num = state.num_trainable
    with torch.no_grad():
        state.params["sh0"].add_(0.25)  # the edit's change
    parent = torch.cat([torch.arange(1, num), torch.tensor([0, 2])])  # row 0 pruned, two children appended
    appended = torch.zeros(len(parent), dtype=torch.bool)
    appended[-2:] = True
    state.replace_rows({n: t.detach()[parent] for n, t in state.params.items()}, parent, appended)

    edited, weights = state.assemble()
    selected = (mask > 0.5).nonzero().flatten()
    kept = torch.ones(len(scene), dtype=torch.bool)
    kept[selected[0]] = False  # the pruned row is gone, the others keep their order
    survivors = torch.arange(len(scene))[kept]
    assert len(edited) == len(survivors) + 2
    frozen = ~(mask > 0.5)[survivors]
    for name, t in scene.items():
        got = getattr(edited, name)
        assert torch.equal(got[: len(survivors)][frozen], t[survivors][frozen])  # untouched rows bit-identical
    assert torch.equal(edited.sh0[: len(survivors)][~frozen], scene.sh0[survivors][~frozen] + 0.25)
    assert torch.equal(edited.means[-2:], scene.means[selected[[0, 2]]])  # the children come last
    assert torch.equal(weights, torch.cat([mask[survivors], mask[selected[[0, 2]]]]))


def test_an_edit_that_keeps_every_row_writes_the_part_over_the_input_and_shares_only_unchanged_parameters():
    scene, part_ids, _ = two_part_scene(40)
    means = scene.means.clone()
    means[part_ids == 0] = 0.0  # +0.0 in the input: -0.0 from the edit is a change (bits, not values)
    scene = scene.replace(means=means)
    before = {n: t.clone() for n, t in scene.items()}
    mask = torch.where(part_ids == 0, 0.75, 0.2)
    sources = torch.arange(len(scene)).flip(0)
    state = MaskedParams(scene, mask, 0.5, sources=sources)
    assert state.num_frozen == 40 and not hasattr(state, "frozen")  # no copy of the frozen rows
    with torch.no_grad():
        state.params["sh0"].add_(0.25)
        state.params["shN"].mul_(-1.0)
        state.params["means"][3, 1] = -0.0
    edited, weights = state.assemble()
    # the independent computation: the input, row by row, with the part's rows as the edit left them
    part = (part_ids == 0).nonzero().flatten().tolist()
    expected = {n: t.clone() for n, t in before.items()}
    for row in part:
        expected["sh0"][row] = before["sh0"][row] + 0.25
        expected["shN"][row] = -before["shN"][row]
    expected["means"][part[3], 1] = -0.0
    for name, t in edited.items():
        assert torch.equal(t.view(torch.int32), expected[name].view(torch.int32)), name
        assert torch.equal(getattr(scene, name).view(torch.int32), before[name].view(torch.int32)), name  # input kept
    shared = {n for n, t in edited.items() if t.data_ptr() == getattr(scene, n).data_ptr()}
    assert shared == {"quats", "scales", "opacities"}  # means changed by one sign bit: a copy
    assert torch.equal(weights, mask) and weights.data_ptr() != mask.data_ptr()
    assert torch.equal(state.row_sources(), sources)
