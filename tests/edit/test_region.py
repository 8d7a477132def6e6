"""The edit region: built once from the selection (and boxes), it contains the part, excludes what is far from
it, projects to a silhouette that covers the part's pixels, and seeds only the empty space of its boxes."""

import math

import pytest
import torch

from engine.camera import orbit_cameras
from engine.edit.region import Box, EditRegion
from engine.render import render
from tests.edit.scenes import two_part_scene


@pytest.fixture(scope="module")
def scene_and_selection():
    scene, part_ids, _ = two_part_scene(150)
    return scene, part_ids == 0  # the head: a shell of radius 0.2 around (0, 0, 0.25)


def test_region_holds_the_part_and_its_margin_but_not_the_far_side(scene_and_selection):
    scene, head = scene_and_selection
    region = EditRegion.around(scene, head, margin=0.05)
    assert bool(region.contains(scene.means[head]).all())
    centre = torch.tensor([0.0, 0.0, 0.25])
    size = 3 * float(torch.exp(scene.scales[head]).amax(-1).median())
    outward = torch.nn.functional.normalize(scene.means[head] - centre, dim=-1)
    just_out = scene.means[head] + outward * (0.05 + size) * 0.8  # inside the margin
    far_out = scene.means[head] + outward * (0.05 + size) * 1.6  # beyond it
    assert region.contains(just_out).float().mean() > 0.97
    assert region.contains(far_out).float().mean() < 0.03
    body_bottom = scene.means[~head][scene.means[~head][:, 2] < -0.3]
    assert not bool(region.contains(body_bottom).any())


def test_projection_covers_the_part_and_not_the_rest(scene_and_selection):
    scene, head = scene_and_selection
    region = EditRegion.around(scene, head, margin=0.02)
    cams = orbit_cameras(torch.tensor([0.0, 0.0, 0.0]), 2.0, torch.tensor([0.0, 120.0]), torch.tensor([10.0, -30.0]),
                         width=48, height=48, fov_y_deg=45)
    sil = region.project(cams)
    assert sil.shape == (2, 48, 48, 1)
    part = render(scene.subset(head), cams, colors=torch.ones(int(head.sum()), 1)).rgb > 0.05
    body = render(scene.subset(~head), cams, colors=torch.ones(int((~head).sum()), 1)).rgb > 0.05
    assert float(sil[part].min()) > 0.5  # every pixel of the part is inside the silhouette
    body_only = body & ~part
    assert float((sil[body_only] > 0.5).float().mean()) < 0.35  # the lower body is mostly outside


def test_boxes_extend_the_region_and_their_empty_space_is_found(scene_and_selection):
    scene, head = scene_and_selection
    box = Box((-0.1, -0.1, 0.6), (0.1, 0.1, 0.95))  # empty space above the head (and its 3-sigma reach)
    region = EditRegion.around(scene, head, margin=0.02, boxes=(box,))
    inside_box = torch.tensor([[0.0, 0.0, 0.9], [0.05, -0.05, 0.75]])
    assert bool(region.contains(inside_box).all())
    assert not bool(EditRegion.around(scene, head, margin=0.02).contains(inside_box).any())
    empty = region.empty_voxel_centres(scene)
    assert empty.shape[0] > 0
    dist = torch.cdist(empty.float(), scene.means).min(dim=1).values
    assert float(dist.min()) > region.cell * 0.9  # no empty voxel holds a Gaussian


def test_bad_regions_are_refused(scene_and_selection):
    scene, head = scene_and_selection
    with pytest.raises(ValueError, match="empty"):
        EditRegion.around(scene, torch.zeros_like(head), margin=0.1)
    with pytest.raises(ValueError, match="margin"):
        EditRegion.around(scene, head, margin=math.nan)
    with pytest.raises(ValueError, match="lo < hi"):
        Box((0, 0, 0), (1, -1, 1))
