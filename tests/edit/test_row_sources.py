"""EditResult.row_sources: for each result row, the input row it descends from (-1: made from nothing).

The history carries the user's named parts over an edit with this map, so it must be true of the result, not
just well-formed: the tests check it against what the rows themselves show. With the geometry learning rates
at 0 nothing moves, so a clone sits exactly on its parent and a split child is its parent's scale shrunk by
`split_factor`; the row map must agree with those facts, found without it.
"""

import math

import pytest
import torch

from engine.edit import Box, EditConfig, LearningRates, PriorRemoval, plan_region, run_edit
from engine.edit.region import seed_boxes
from engine.guidance.closed_form import ClosedFormPrior
from engine.optimize import DensifyConfig
from tests.edit.scenes import params_equal, two_part_scene

RED = (0.85, 0.1, 0.1)
STILL = LearningRates(means=0.0, scales=0.0, quats=0.0, opacities=0.0)  # only colour moves
# one refinement, after step 5 of 8, growing the 30% of the masked rows with the largest gradient
ONCE = dict(start_step=5, interval=5, grad_threshold=0.0, grow_fraction=0.3)


@pytest.fixture(scope="module")
def scene_and_mask():
    """The two-part scene, the head masked, a few head rows at a soft 0.7 and a few at 0.4 (below the
    threshold: frozen like the body)."""
    scene, part_ids, _ = two_part_scene(150)
    mask = (part_ids == 0).float()
    mask[:10] = 0.7
    mask[10:20] = 0.4
    return scene, mask


def _config(**kw) -> EditConfig:
    base = dict(prompt="a red head", method="sds", steps=8, resolution=32, preview_every=0, edit="shape")
    base.update(kw)
    return EditConfig(**base)


def _sources(result, count_before: int) -> torch.Tensor:
    rows = result.row_sources
    assert rows is not None and rows.dtype == torch.int64 and rows.shape == (len(result.scene),)
    assert int(rows.min()) >= -1 and int(rows.max()) < count_before  # a valid input row or -1
    return rows


def _frozen_rows_are_their_sources(scene, mask, result, rows) -> None:
    """Every unmasked input row appears exactly once, bit-identical, with its weight, where its source says."""
    frozen = (mask <= 0.5).nonzero().flatten()
    from_frozen = (rows >= 0) & (mask[rows.clamp(min=0)] <= 0.5)
    assert torch.equal(rows[from_frozen].sort().values, frozen)
    assert params_equal(result.scene.subset(from_frozen), scene.subset(rows[from_frozen]))
    assert torch.equal(result.mask[from_frozen], mask[rows[from_frozen]])


def test_with_densify_every_row_has_a_valid_source_and_frozen_rows_are_bit_identical(scene_and_mask):
    scene, mask = scene_and_mask
    config = _config(seed=1, densify=DensifyConfig(start_step=3, interval=3, grad_threshold=0.0, grow_fraction=0.3,
                                                   scale_threshold=0.0, prune_opacity=0.3))
    planted = torch.tensor([30, 31, 32])  # masked rows faint in the input: the edit did not fade them, they stay
    faint = scene.replace(opacities=scene.opacities.index_fill(0, planted, -1.5))
    result = run_edit(faint, mask, config, ClosedFormPrior(RED))
    rows = _sources(result, len(scene))
    assert result.num_split > 0 and len(result.scene) != len(scene)
    _frozen_rows_are_their_sources(faint, mask, result, rows)
    assert bool(torch.isin(planted, rows).all())
    assert bool((rows >= 0).all())  # nothing here is made from nothing
    masked_rows = rows[result.mask > 0.5]
    assert bool((mask[masked_rows] > 0.5).all())  # a masked row descends from a masked row, with its weight
    assert torch.equal(result.mask[result.mask > 0.5], mask[masked_rows])


def test_a_clone_sits_on_its_source_row(scene_and_mask):
    scene, mask = scene_and_mask
    config = _config(lr=STILL, densify=DensifyConfig(**ONCE, scale_threshold=10.0))  # every grower is small
    result = run_edit(scene, mask, config, ClosedFormPrior(RED))
    rows = _sources(result, len(scene))
    assert result.num_cloned > 0 and result.num_split == 0
    assert len(result.scene) == len(scene) + result.num_cloned - result.num_pruned
    assert torch.equal(result.scene.means, scene.means[rows])  # each row stands where its source stood
    counts = torch.bincount(rows, minlength=len(scene))
    cloned = (counts == 2).nonzero().flatten()
    assert cloned.numel() == result.num_cloned and bool((mask[cloned] > 0.5).all())  # parents are masked rows
    _frozen_rows_are_their_sources(scene, mask, result, rows)


def test_split_children_shrink_their_source_row(scene_and_mask):
    scene, mask = scene_and_mask
    config = _config(lr=STILL, densify=DensifyConfig(**ONCE, scale_threshold=0.0))  # every grower is large
    result = run_edit(scene, mask, config, ClosedFormPrior(RED))
    rows = _sources(result, len(scene))
    assert result.num_split > 0 and result.num_cloned == 0
    shrunk = scene.scales[rows] - math.log(config.densify.split_factor)
    is_child = (result.scene.scales == shrunk).all(dim=-1)
    is_kept = (result.scene.scales == scene.scales[rows]).all(dim=-1)
    assert bool((is_child | is_kept).all())  # every row is its source, or a split child of it
    assert int(is_child.sum()) == 2 * result.num_split  # both children of each split, no other row
    assert bool((mask[rows[is_child]] > 0.5).all())  # and their source is a masked row
    split = torch.bincount(rows[is_child], minlength=len(scene))
    assert bool((split[split > 0] == 2).all())  # two children per split source
    moved = (result.scene.means - scene.means[rows]).norm(dim=-1)
    assert bool((moved[is_child] > 0).all()) and bool((moved[~is_child] == 0).all())
    _frozen_rows_are_their_sources(scene, mask, result, rows)


def test_a_seed_box_edit_has_new_rows_exactly_for_the_seeds(scene_and_mask):
    scene, mask = scene_and_mask
    box = Box((-0.1, -0.1, 0.6), (0.1, 0.1, 0.95))  # empty space above the head
    config = _config(lr=STILL, region_boxes=(box,), densify=DensifyConfig(enabled=False))
    result = run_edit(scene, mask, config, ClosedFormPrior(RED))
    rows = _sources(result, len(scene))
    seeds = seed_boxes(plan_region(scene, mask, config)[0], scene, config)
    assert seeds is not None and len(seeds) > 0
    # a row stands on a seed's centre exactly when the map says it was made from nothing
    on_seed = (result.scene.means[:, None] == seeds.means[None]).all(dim=-1).any(dim=1)
    assert int(on_seed.sum()) > 0 and torch.equal(rows < 0, on_seed)
    assert torch.equal(result.scene.means[rows >= 0], scene.means[rows[rows >= 0]])
    _frozen_rows_are_their_sources(scene, mask, result, rows)


def test_prior_removal_regrowth_replaces_the_masked_rows_with_new_ones(scene_and_mask):
    scene, mask = scene_and_mask
    config = _config(method="romap", anchor_refresh=8, anchor_views=2, densify=DensifyConfig(enabled=False),
                     prior=PriorRemoval(enabled=True, regrow=True, regrow_count=25))
    result = run_edit(scene, mask, config, ClosedFormPrior(RED))
    rows = _sources(result, len(scene))
    assert int((rows < 0).sum()) == 25  # the regrown seeds (none faded away here)
    assert not bool((mask[rows[rows >= 0]] > 0.5).any())  # no masked row survives a regrowth
    assert bool((result.mask[rows < 0] == 1).all())
    _frozen_rows_are_their_sources(scene, mask, result, rows)


def test_a_prior_reset_keeps_every_row_in_place(scene_and_mask):
    scene, mask = scene_and_mask
    config = _config(method="romap", anchor_refresh=8, anchor_views=2, densify=DensifyConfig(enabled=False),
                     prior=PriorRemoval(enabled=True))
    result = run_edit(scene, mask, config, ClosedFormPrior(RED))
    assert torch.equal(_sources(result, len(scene)), torch.arange(len(scene)))


def test_a_cancelled_edit_maps_every_row_to_itself(scene_and_mask):
    scene, mask = scene_and_mask
    result = run_edit(scene, mask, _config(steps=20), ClosedFormPrior(RED), should_stop=lambda: True)
    assert result.cancelled and torch.equal(_sources(result, len(scene)), torch.arange(len(scene)))
