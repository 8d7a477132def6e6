import pytest
import torch

from engine.masks.evaluation import part_ious, toy_parts_scene
from engine.masks.galp import galp
from engine.masks.multiview import (
    MultiViewConfig, parse_click, point_visibility, scene_camera, segment_click, views_around,
)
from engine.masks.pick import NothingHit, click_point
from engine.masks.sam import load_sam

from conftest import ColourSegmenter


@pytest.fixture(scope="module")
def flat_toy():
    """The toy figure with flat part colours, so the colour segmenter is a perfect 'SAM'."""
    return toy_parts_scene(2000, colour_noise=0.0, seed=1)


def _pixel(cam, point):
    p = cam.viewmats[0, :3, :3] @ point + cam.viewmats[0, :3, 3]
    uv = cam.Ks[0] @ (p / p[2])
    return float(uv[0]), float(uv[1])


def test_one_click_on_the_head_lifts_the_head(flat_toy):
    scene, ids, names = flat_toy
    cam = scene_camera(scene, 30.0, 15.0, width=96, height=96)
    x, y = _pixel(cam, torch.tensor([0.0, 0.0, 0.6]))
    segmenter = ColourSegmenter()
    result = segment_click(scene, segmenter, cam, x, y, MultiViewConfig(num_views=12, size=64))
    assert torch.allclose(result.point, click_point(scene, cam, x, y))
    assert len(result.kept) >= 4  # a point on the head's front: seen from the front half of the orbit
    facing = [i for i in range(12) if i not in result.kept]
    assert all(float((views_around(result.point, 1.0, MultiViewConfig(num_views=12)).centers[i] - result.point)
                     @ (cam.centers[0] - result.point)) < 0.5 for i in facing)
    assert segmenter.calls == 1 + len(result.kept)
    lifted = galp(scene, result.views)
    head = names.index("head")
    truth = torch.where(ids == head, 0, 1)  # part 0 = the head
    assert part_ious(lifted.weights, truth, 0.5)[0] > 0.85


def test_views_where_the_point_is_hidden_are_skipped(flat_toy):
    scene, ids, names = flat_toy
    point = click_point(scene, scene_camera(scene, 0.0, 10.0, width=96, height=96), *_pixel(
        scene_camera(scene, 0.0, 10.0, width=96, height=96), torch.tensor([0.0, -0.3, -0.1])))
    cams = views_around(point, 3.0, MultiViewConfig(num_views=8, size=48, elevations=(0.0,)))
    pixels, visible = point_visibility(scene, cams, point, 0.03)
    # A point on the body's -y side (under the right arm's level) is seen from that side only.
    sides = torch.atan2(cams.centers[:, 1] - point[1], cams.centers[:, 0] - point[0])
    facing = torch.sin(sides) < -0.5
    assert visible[facing].all() and not visible[torch.sin(sides) > 0.5].any()
    assert pixels.shape == (8, 2)


def test_tiny_sam_runs_the_whole_click_path(flat_toy, tiny_sam):
    scene, ids, names = flat_toy
    path, config = tiny_sam
    cam = scene_camera(scene, 30.0, 15.0, width=64, height=64)
    result = segment_click(scene, load_sam(path, config=config), cam, 32.0, 32.0, MultiViewConfig(num_views=4, size=48))
    sizes = [(len(v), v.cameras.width) for v in result.views]
    assert sizes[0] == (1, 64) and sum(n for n, _ in sizes) == 1 + len(result.kept)
    assert all(torch.isin(v.masks, torch.tensor([0.0, 1.0])).all() for v in result.views)
    assert len(result.scores) == 1 + len(result.kept)


def test_click_into_the_background(flat_toy):
    scene, ids, names = flat_toy
    cam = scene_camera(scene, 30.0, 15.0, width=64, height=64)
    with pytest.raises(NothingHit):
        segment_click(scene, ColourSegmenter(), cam, 1.0, 1.0)


def test_parse_click():
    assert parse_click("30,15,120.5,64") == (30.0, 15.0, 120.5, 64.0)
    for bad in ("30,15,120", "a,b,c,d", "1,2,3,nan"):
        with pytest.raises(ValueError, match="AZ,EL,X,Y"):
            parse_click(bad)
