"""Edit quality against a known ideal result (bench/edit_quality.py's numbers): perfect when the result is the
target, spill vs the target when something outside the part changed, floaters when edited Gaussians leave the
region, and None — not infinity — for a PSNR over a region no view sees."""

from __future__ import annotations

import json

import pytest
import torch

from engine.edit import EditConfig, plan_region
from engine.evaluate import PSNR_CAP, edit_quality, held_out_cameras
from engine.scene import rgb_to_sh0
from tests.edit.scenes import two_part_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recolour(scene, rows, rgb):
    out = scene.detach().clone()
    out.sh0[rows] = rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))
    return out


@pytest.fixture(scope="module")
def case():
    scene, part_ids, _ = two_part_scene(40)
    head = part_ids == 0
    region, orbit = plan_region(scene, head.float(), EditConfig())
    cameras = held_out_cameras(orbit.center, orbit.radius * 1.3, resolution=24, views=4)
    target = _recolour(scene, head, (0.9, 0.1, 0.1))
    return scene, head, target, region, cameras


def _quality(case, result, edited_rows=None, selected=None, changed=None):
    scene, head, target, region, cameras = case
    edited_rows = head if edited_rows is None else edited_rows
    selected = head if selected is None else selected
    changed = head if changed is None else changed
    return edit_quality(scene, selected, result, edited_rows, target, changed, region, cameras)


def test_the_ideal_result_is_perfect(case):
    scene, head, target, _, _ = case
    q = _quality(case, target)
    assert (q.psnr_inside, q.psnr_outside, q.spill_vs_target, q.floaters) == (PSNR_CAP, PSNR_CAP, 0.0, 0)
    assert q.gaussians_before == q.gaussians_after == len(scene)


def test_no_edit_is_far_inside_and_clean_outside(case):
    scene, *_ = case
    q = _quality(case, scene)
    assert q.psnr_inside < 15 and q.psnr_outside > 40 and q.spill_vs_target < 0.01


def test_a_change_outside_the_part_is_spill_vs_the_target(case):
    _, head, target, _, _ = case
    leaked = _recolour(target, ~head, (0.1, 0.1, 0.1))  # the body went dark too
    q = _quality(case, leaked)
    assert q.spill_vs_target > 0.05 and q.psnr_outside < 25


def test_edited_gaussians_that_leave_the_region_are_floaters(case):
    _, head, target, region, _ = case
    flown = target.detach().clone()
    rows = head.nonzero().flatten()[:5]
    flown.means[rows] += torch.tensor([5.0, 0.0, 0.0])
    assert not region.contains(flown.means[rows]).any()
    assert _quality(case, flown).floaters == 5
    assert _quality(case, flown, edited_rows=torch.zeros_like(head)).floaters == 0  # not the edit's doing


def test_a_region_no_view_sees_has_no_psnr(case):
    """Pinned meaning: an empty part region gives psnr_inside None (it was inf), and as_dict stays plain JSON."""
    scene, head, *_ = case
    nothing = torch.zeros_like(head)
    q = _quality(case, scene, selected=nothing, changed=nothing)
    assert q.psnr_inside is None and q.psnr_outside is not None
    row = q.as_dict()
    assert row["psnr_inside"] is None and json.loads(json.dumps(row, allow_nan=False)) == row
