"""The measurements themselves, on hand-made images: one PSNR (identical images -> PSNR_CAP, an empty region ->
None), the two spills (vs the input, beyond the part's coverage; vs the target, outside the part), floaters,
and unmasked Gaussians that changed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine.evaluate.metrics import (
    FLOATER_OPACITY,
    PSNR_CAP,
    SPILL_VS_INPUT_TOLERANCE,
    SPILL_VS_TARGET_TOLERANCE,
    count_floaters,
    frozen_rows_changed,
    psnr,
    spill_vs_input,
    spill_vs_target,
)
from tests.edit.scenes import two_part_scene


def _images():
    a = torch.zeros(1, 2, 2, 3)
    b = a.clone()
    b[0, 0, 0] = 0.1  # one pixel off by 0.1 in every channel
    return a, b


# --- PSNR --------------------------------------------------------------------------------------------------
def test_psnr_formula_over_all_pixels_and_over_weighted_ones():
    a, b = _images()
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / (0.01 / 4)))
    assert psnr(a, b, torch.ones(1, 2, 2, 1)) == pytest.approx(psnr(a, b))
    only_that_pixel = torch.zeros(1, 2, 2, 1)
    only_that_pixel[0, 0, 0] = 1
    assert psnr(a, b, only_that_pixel) == pytest.approx(20.0)
    assert psnr(a, b, only_that_pixel.bool()) == pytest.approx(20.0)  # a boolean region is a 0/1 weight
    half = only_that_pixel + 0.5 * (1 - only_that_pixel)  # the other three pixels count half
    assert psnr(a, b, half) == pytest.approx(10 * math.log10(1 / (0.01 / 2.5)))


def test_identical_images_give_the_cap_not_infinity():
    """Pinned meaning: a perfect match is PSNR_CAP (100 dB), so results stay plain JSON and means stay finite."""
    a, _ = _images()
    assert PSNR_CAP == 100.0
    assert psnr(a, a) == PSNR_CAP and psnr(a, a, torch.ones(1, 2, 2, 1)) == PSNR_CAP
    assert psnr(a, a + 1e-6) == PSNR_CAP  # MSE 1e-12: below the cap's 1e-10
    assert psnr(a, a + 0.02) < PSNR_CAP
    json.dumps(psnr(a, a))  # never inf or nan


def test_an_empty_region_has_nothing_to_measure():
    """Pinned meaning: no pixel with weight > 0 gives None — not the cap ("perfect") and not infinity. The edit
    loop's psnr answered 100 dB here and edit_quality's inf."""
    a, b = _images()
    assert psnr(a, b, torch.zeros(1, 2, 2, 1)) is None
    assert psnr(a, a, torch.zeros(1, 2, 2, 1, dtype=torch.bool)) is None
    assert psnr(a[:0], b[:0]) is None  # no pixels at all


def test_psnr_reads_any_float_dtype_and_shape():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 4, 3, generator=g), torch.rand(2, 3, 4, 3, generator=g)
    assert psnr(a.double(), b.double()) == pytest.approx(psnr(a, b), abs=1e-5)
    assert psnr(a.half(), b.half()) == pytest.approx(psnr(a, b), abs=0.05)
    assert psnr(a[0, 0, 0], b[0, 0, 0]) == pytest.approx(
        10 * math.log10(1 / float(((a[0, 0, 0] - b[0, 0, 0]) ** 2).mean())))


# --- spill vs the input --------------------------------------------------------------------------------------
def test_spill_vs_input_counts_outside_pixels_that_moved_beyond_the_parts_coverage():
    before = torch.zeros(1, 1, 4, 3)
    coverage = torch.tensor([0.0, 0.0, 0.3, 0.9]).view(1, 1, 4, 1)  # two clear, one partly covered, one inside
    after = before.clone()
    after[0, 0, 0] = 0.5  # outside, moved: spill
    after[0, 0, 1] = 1.5 / 255  # outside, moved within the tolerance: not spill
    after[0, 0, 2] = 0.25  # coverage 0.3 can move it by up to 0.3: not spill
    after[0, 0, 3] = 1.0  # inside the part: never spill
    assert spill_vs_input(before, after, coverage) == pytest.approx(1 / 3)
    after[0, 0, 2] = 0.3 + 3 / 255  # beyond what coverage 0.3 explains
    assert spill_vs_input(before, after, coverage) == pytest.approx(2 / 3)
    assert spill_vs_input(before, before, coverage) == 0.0
    assert spill_vs_input(before, after, torch.ones_like(coverage)) == 0.0  # no outside pixel: nothing leaked
    assert SPILL_VS_INPUT_TOLERANCE == pytest.approx(2 / 255)


# --- spill vs the target ------------------------------------------------------------------------------------
def test_spill_vs_target_counts_outside_pixels_off_the_target():
    target = torch.full((1, 1, 4, 3), 0.5)
    part = torch.tensor([False, False, False, True]).view(1, 1, 4)
    result = target.clone()
    result[0, 0, 0, 1] += 3 / 255  # one channel clearly off: spill
    result[0, 0, 1] += 1 / 255  # within the tolerance
    result[0, 0, 3] = 0.0  # inside the part: measured by PSNR inside, not spill
    assert spill_vs_target(result, target, part) == pytest.approx(1 / 3)
    assert spill_vs_target(target, target, part) == 0.0
    assert spill_vs_target(result, target, torch.ones_like(part)) == 0.0
    assert SPILL_VS_TARGET_TOLERANCE == pytest.approx(2 / 255)


# --- Gaussians ------------------------------------------------------------------------------------------------
class _HalfSpace:
    """An edit region: x < 0."""

    def contains(self, means):  # [N, 3] -> [N] bool
        return means[:, 0] < 0


def test_floaters_are_visible_edited_gaussians_outside_the_region():
    scene, _, _ = two_part_scene(10)
    scene = scene.detach().clone()
    scene.means[:, 0] = torch.linspace(-1, 1, len(scene))  # first half inside the region, second half out
    scene.opacities[:] = 5.0
    edited = torch.zeros(len(scene), dtype=torch.bool)
    assert count_floaters(scene, edited, _HalfSpace()) == 0
    edited[:] = True
    assert count_floaters(scene, edited, _HalfSpace()) == 10
    faint = torch.logit(torch.tensor(FLOATER_OPACITY / 2))
    scene.opacities[-3:] = faint  # too faint to be seen
    assert count_floaters(scene, edited, _HalfSpace()) == 7


def test_frozen_rows_matched_through_densification():
    scene, part_ids, _ = two_part_scene(10)
    mask = (part_ids == 0).float()
    grown = type(scene).concat([scene, scene.subset(part_ids == 0)])  # masked rows appended, as densify does
    grown_mask = torch.cat([mask, torch.ones(10)])
    assert frozen_rows_changed(scene, mask, grown, grown_mask, 0.5) == 0
    moved = grown.detach().clone()
    moved.means[15] += 1.0  # row 15: a body Gaussian, which the mask leaves alone
    assert frozen_rows_changed(scene, mask, moved, grown_mask, 0.5) == 1
    assert frozen_rows_changed(scene, mask, grown, torch.zeros(30), 0.5) is None  # counts differ
