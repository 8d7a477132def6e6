"""`python -m engine render` and `turntable`: framed orbit views to PNG / MP4, one-line errors, no partial files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from engine.__main__ import main
from engine.io import save
from engine.scene import GaussianScene, random_scene, rgb_to_sh0


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    """A red blob of Gaussians far from the origin (framing must follow the bounding box), with outliers."""
    scene = random_scene(3000, seed=0, extent=0.5, scale_range=(0.02, 0.06))
    scene = scene.replace(means=scene.means + torch.tensor([10.0, -4.0, 2.0]),
                          sh0=rgb_to_sh0(torch.tensor([0.9, 0.1, 0.1])).expand(3000, 1, 3).clone(),
                          opacities=torch.full((3000,), 4.0))
    path = tmp_path_factory.mktemp("scene") / "blob.ply"
    save(scene, path)
    return path


def test_render_writes_a_framed_image(scene_file, tmp_path, capsys):
    out = tmp_path / "view.png"
    assert main(["render", str(scene_file), "--out", str(out), "--width", "96", "--height", "64",
                 "--azimuth", "45", "--background", "white"]) == 0
    assert "wrote" in capsys.readouterr().out
    image = np.asarray(Image.open(out))
    assert image.shape == (64, 96, 3)
    red = (image[..., 0] > 150) & (image[..., 1] < 100)
    white = (image > 240).all(axis=-1)
    assert red[24:40, 40:56].all()  # the blob is in the middle...
    assert white[0, 0] and white[-1, -1]  # ...on a white background
    assert 0.05 < red.mean() < 0.8  # ...and neither lost nor cropped to a close-up
    assert [p.name for p in tmp_path.iterdir()] == ["view.png"]  # no temporary file left behind


def test_render_angles_and_background_change_the_image(scene_file, tmp_path):
    paths = {}
    for name, extra in {"a": [], "b": ["--elevation", "60", "--azimuth", "200"], "c": ["--background", "#00ff00"]}.items():
        paths[name] = tmp_path / f"{name}.png"
        assert main(["render", str(scene_file), "--out", str(paths[name]), "--width", "48", "--height", "48",
                     *extra]) == 0
    a, b, c = (np.asarray(Image.open(p)).astype(int) for p in paths.values())
    assert np.abs(a - b).mean() > 1  # the blob is random, so another view differs
    assert tuple(c[0, 0]) == (0, 255, 0) and tuple(a[0, 0]) == (0, 0, 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "{tmp}/x.gif"], "must end with"),
        (["--out", "{tmp}/missing/x.png"], "does not exist"),
        (["--out", "{tmp}/x.png", "--fov", "190"], "--fov"),
        (["--out", "{tmp}/x.png", "--width", "0"], "--width"),
        (["--out", "{tmp}/x.png", "--background", "purple-ish"], "--background"),
        (["--out", "{tmp}/x.png", "--up", "0,0,0"], "--up"),
        (["--out", "{tmp}/x.png", "--sh-degree", "3"], "only has SH degree"),
    ],
)
def test_render_bad_input_is_one_line_error(scene_file, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["render", str(scene_file), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_render_missing_scene_file(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.ply"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert list(tmp_path.iterdir()) == []


def test_turntable_writes_an_mp4_with_every_frame(scene_file, tmp_path, capsys):
    import imageio.v2 as imageio

    out = tmp_path / "spin.mp4"
    assert main(["turntable", str(scene_file), "--out", str(out), "--frames", "6", "--size", "32", "--fps", "12"]) == 0
    reader = imageio.get_reader(out)
    try:
        assert reader.count_frames() == 6
        frames = [reader.get_data(i) for i in range(6)]
    finally:
        reader.close()
    assert frames[0].shape == (32, 32, 3)
    assert max(f[..., 0].mean() for f in frames) > 20  # the red blob is in the video
    assert [p.name for p in tmp_path.iterdir()] == ["spin.mp4"]


def test_turntable_rejects_odd_sizes_and_other_formats(scene_file, tmp_path, capsys):
    assert main(["turntable", str(scene_file), "--out", str(tmp_path / "v.mp4"), "--size", "33"]) == 2
    assert "even" in capsys.readouterr().err
    assert main(["turntable", str(scene_file), "--out", str(tmp_path / "v.avi")]) == 2
    assert main(["turntable", str(scene_file), "--out", str(tmp_path / "v.mp4"), "--frames", "0"]) == 2
    assert list(tmp_path.iterdir()) == []
