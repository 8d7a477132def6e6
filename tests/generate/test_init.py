"""Starting scenes for generation: primitives of random-coloured Gaussians, and init files."""

from __future__ import annotations

import pytest
import torch

from engine.generate.init import load_init_scene, primitive_scene
from engine.io import save
from engine.scene import random_scene


def test_sphere_fills_the_ball_with_random_colours():
    scene = primitive_scene("sphere", 500, radius=0.5, center=(1.0, 2.0, 3.0), opacity=0.3, seed=3)
    assert len(scene) == 500 and scene.sh_degree == 0
    offsets = scene.means - torch.tensor([1.0, 2.0, 3.0])
    radii = offsets.norm(dim=-1)
    assert float(radii.max()) <= 0.5 + 1e-5
    # Uniform in volume: the fraction inside half the radius is about 1/8.
    assert 0.06 < float((radii < 0.25).float().mean()) < 0.2
    assert abs(float(offsets.mean(0).norm())) < 0.08
    colours = scene.base_colors()
    assert float(colours.std(0).min()) > 0.2  # random, not one colour
    assert torch.allclose(scene.activated_opacities(), torch.full((500,), 0.3), atol=1e-6)
    # Neighbours overlap: the Gaussian size is comparable to the spacing.
    spacing = (4 / 3 * torch.pi * 0.5**3 / 500) ** (1 / 3)
    assert 0.4 * spacing < float(scene.activated_scales().mean()) < spacing


def test_ellipsoid_is_stretched_by_its_axes():
    scene = primitive_scene("ellipsoid", 800, radius=1.0, axes=(0.5, 0.5, 2.0), seed=0)
    m = scene.means
    inside = (m[:, 0] / 0.5) ** 2 + (m[:, 1] / 0.5) ** 2 + (m[:, 2] / 2.0) ** 2
    assert float(inside.max()) <= 1.0 + 1e-4
    assert float(m[:, 2].abs().max()) > 1.5 and float(m[:, 0].abs().max()) < 0.5 + 1e-5


def test_primitives_are_seeded():
    a = primitive_scene("sphere", 50, seed=1)
    b = primitive_scene("sphere", 50, seed=1)
    c = primitive_scene("sphere", 50, seed=2)
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))
    assert not torch.equal(a.means, c.means)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": "cube"}, "unknown primitive"),
        ({"num": 0}, "at least 1"),
        ({"radius": -1.0}, "radius"),
        ({"opacity": 1.0}, "opacity"),
        ({"shape": "ellipsoid", "axes": (1.0, 0.0, 1.0)}, "axes"),
    ],
)
def test_bad_primitives_are_refused(kwargs, message):
    args = {"shape": "sphere", "num": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        primitive_scene(args.pop("shape"), args.pop("num"), **args)


def test_scene_file_is_used_as_is(tmp_path):
    scene = random_scene(40, seed=5)
    save(scene, tmp_path / "start.ply")
    loaded = load_init_scene(tmp_path / "start.ply")
    assert torch.allclose(loaded.means, scene.means) and len(loaded) == 40


def test_unreadable_and_empty_init_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_init_scene(tmp_path / "missing.obj")
    garbage = tmp_path / "garbage.obj"
    garbage.write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="garbage.obj"):
        load_init_scene(garbage)
    empty = tmp_path / "empty.ply"
    empty.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                     "property float z\nend_header\n")
    with pytest.raises(ValueError, match="empty.ply"):
        load_init_scene(empty)
