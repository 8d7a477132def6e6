import pytest
import torch

from engine.camera import orbit_cameras
from engine.masks.pick import NothingHit, click_point, pick, pick_ray, pixel_contributions
from engine.render import render
from engine.scene import GaussianScene


@pytest.fixture
def layered():
    """Seen from +x: a big opaque disc at x=0.2 whose centre is off the optical axis but covers it, and a
    small Gaussian exactly on the axis behind it (the nearest centre to the ray, yet hidden)."""
    means = torch.tensor([[0.2, 0.0, 0.04], [-0.3, 0.0, 0.0], [0.0, 0.9, 0.0]])
    quats = torch.tensor([[0.7071, 0.0, 0.7071, 0.0], [1.0, 0, 0, 0], [1.0, 0, 0, 0]])  # disc normal along x
    scales = torch.log(torch.tensor([[0.2, 0.2, 0.01], [0.05, 0.05, 0.05], [0.05, 0.05, 0.05]]))
    scene = GaussianScene.create(means=means, quats=quats, scales=scales,
                                 opacities=torch.tensor([8.0, 8.0, 8.0]), sh0=torch.zeros(3, 3))
    cam = orbit_cameras(torch.zeros(3), 3.0, [0.0], 0.0, width=64, height=48, fov_y_deg=40.0)
    return scene, cam


def test_pick_takes_the_visible_gaussian_not_the_nearest_centre(layered):
    scene, cam = layered
    mask = pick(scene, cam, 32.0, 24.0)
    assert mask.tolist() == [1.0, 0.0, 0.0]
    # The disc does not reach the third Gaussian's pixel: there, that one is picked.
    p = cam.viewmats[0, :3, :3] @ scene.means[2] + cam.viewmats[0, :3, 3]
    uv = cam.Ks[0] @ (p / p[2])
    assert pick(scene, cam, float(uv[0]), float(uv[1])).tolist() == [0.0, 0.0, 1.0]


def test_pick_ray_matches_a_camera_pick(layered):
    scene, cam = layered
    centre = cam.centers[0]
    assert pick_ray(scene, centre, -centre).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(NothingHit, match="ray from"):
        pick_ray(scene, centre, centre)  # looking away from the scene


def test_click_into_the_background_is_an_error(layered):
    scene, cam = layered
    with pytest.raises(NothingHit, match="hits no Gaussian"):
        pick(scene, cam, 1.0, 1.0)
    with pytest.raises(NothingHit, match="outside"):
        pick(scene, cam, 64.0, 10.0)
    with pytest.raises(NothingHit):
        click_point(scene, cam, 1.0, 1.0)


def test_click_point_lies_on_the_front_surface(layered):
    scene, cam = layered
    p = click_point(scene, cam, 32.0, 24.0)
    assert abs(float(p[0]) - 0.2) < 0.05 and abs(float(p[1])) < 0.05 and abs(float(p[2])) < 0.05


def test_pixel_weights_match_the_renderers_gradient(small_scene):
    """A pick's weights are what autograd through render() gives for a one-pixel mask."""
    cam = orbit_cameras(torch.zeros(3), 2.5, [30.0], 20.0, width=24, height=20)
    x, y = 11, 9
    colors = torch.ones(len(small_scene), 1, requires_grad=True)
    out = render(small_scene, cam, colors=colors, backend="reference")
    out.rgb[0, y, x, 0].backward()
    idx, weight = pixel_contributions(small_scene, cam, x + 0.5, y + 0.5)
    expected = colors.grad[:, 0]
    assert set(idx.tolist()) == set(expected.nonzero().flatten().tolist())
    torch.testing.assert_close(weight, expected[idx], atol=1e-5, rtol=1e-4)
