import pytest
import torch

from engine.camera import orbit_cameras
from engine.masks.selection import box, brush, rectangle, region_select, sphere
from engine.scene import GaussianScene


@pytest.fixture
def wall_and_hidden():
    """Seen from above (+z): an opaque wall at z=0 hiding a small Gaussian below it at the image centre, and a
    visible small Gaussian beside the wall."""
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.02], [0.0, 0.0, -0.4], [0.9, 0.0, 0.0]])
    scales = torch.log(torch.tensor([[0.25, 0.25, 0.005], [0.25, 0.25, 0.005], [0.04] * 3, [0.04] * 3]))
    scene = GaussianScene.create(means=means, quats=torch.tensor([[1.0, 0, 0, 0]] * 4), scales=scales,
                                 opacities=torch.full((4,), 8.0), sh0=torch.zeros(4, 3))
    cam = orbit_cameras(torch.zeros(3), 3.0, [0.0], 89.9, width=48, height=48, fov_y_deg=45.0)
    return scene, cam


def _pixel_of(cam, point):
    p = cam.viewmats[0, :3, :3] @ point + cam.viewmats[0, :3, 3]
    uv = cam.Ks[0] @ (p / p[2])
    return float(uv[0]), float(uv[1])


def test_visible_only_brush_skips_hidden_gaussians_see_through_does_not(wall_and_hidden):
    scene, cam = wall_and_hidden
    x, y = _pixel_of(cam, scene.means[2])
    visible = brush(scene, cam, [[x, y]], 4.0)
    through = brush(scene, cam, [[x, y]], 4.0, visible_only=False)
    assert visible[2] == 0 and through[2] == 1
    assert 0 < visible[1] < 1  # the wall is only partly under the brush: a soft weight
    assert through[3] == 0 and visible[3] == 0


def test_brush_stroke_reaches_along_its_path(wall_and_hidden):
    scene, cam = wall_and_hidden
    x0, y0 = _pixel_of(cam, scene.means[2])
    x1, y1 = _pixel_of(cam, scene.means[3])
    dab = brush(scene, cam, [[x1, y1]], 3.0)
    stroke = brush(scene, cam, [[x0, y0], [x1, y1]], 3.0)
    assert dab[3] > 0.9 and stroke[3] > 0.9
    assert stroke[1] > dab[1]


def test_rectangle_over_the_whole_image_takes_every_visible_gaussian(wall_and_hidden):
    scene, cam = wall_and_hidden
    mask = rectangle(scene, cam, 48, 48, 0, 0)  # corners in any order
    assert mask[3] > 0.99 and mask[1] > 0.99 and mask[2] == 0
    assert rectangle(scene, cam, 0, 0, 48, 48, visible_only=False).tolist() == [1.0, 1.0, 1.0, 1.0]


def test_region_must_match_the_camera(wall_and_hidden):
    scene, cam = wall_and_hidden
    with pytest.raises(ValueError, match="region must be"):
        region_select(scene, cam, torch.ones(10, 10))


def test_sphere_and_box_select_by_centre():
    means = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [1.0, 0, 0], [0.0, 0.9, 0.0]])
    scene = GaussianScene.create(means=means, quats=torch.tensor([[1.0, 0, 0, 0]] * 4),
                                 scales=torch.full((4, 3), -3.0), opacities=torch.zeros(4), sh0=torch.zeros(4, 3))
    assert sphere(scene, [0, 0, 0], 0.6).tolist() == [1.0, 1.0, 0.0, 0.0]
    soft = sphere(scene, [0, 0, 0], 0.6, feather=0.8)
    assert soft[0] == 1 and soft[1] == 1 and soft[2] == pytest.approx(0.5) and soft[3] == pytest.approx(0.625)
    assert box(scene, [0.5, 0, 0], [0.6, 0.1, 0.1]).tolist() == [1.0, 1.0, 1.0, 0.0]
    # Rotated 45 degrees about z, the box's long axis points along x+y.
    c = 0.5 ** 0.5
    rot = torch.tensor([[c, -c, 0.0], [c, c, 0.0], [0.0, 0.0, 1.0]])
    assert box(scene, [0, 0, 0], [0.3, 0.05, 0.1], rotation=rot).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert box(scene, [0, 0.45, 0], [0.6, 0.7, 0.1], rotation=rot).tolist() == [1.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        sphere(scene, [0, 0, 0], -1.0)
