import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.camera import orbit_cameras
from engine.masks.views_io import MaskViews, ViewsError, read_views, write_views


def _views(width=12, height=8, num=3):
    cams = orbit_cameras(torch.zeros(3), 2.0, [0.0, 90.0, 200.0][:num], 20.0, width=width, height=height)
    masks = (torch.rand(num, height, width, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    return MaskViews(cams, masks)


@pytest.fixture
def folder(tmp_path):
    views = _views()
    write_views(tmp_path / "views", views)
    return tmp_path / "views", views


def _entries(path):
    return json.loads((path / "cameras.json").read_text())


def _rewrite(path, entries):
    (path / "cameras.json").write_text(json.dumps(entries))


def test_round_trip(folder):
    path, views = folder
    (group,) = read_views(path)
    torch.testing.assert_close(group.cameras.viewmats, views.cameras.viewmats)
    torch.testing.assert_close(group.cameras.Ks, views.cameras.Ks)
    torch.testing.assert_close(group.masks, views.masks)


def test_views_of_different_sizes_are_grouped(tmp_path):
    write_views(tmp_path, _views(12, 8), prefix="a")
    first = _entries(tmp_path)
    write_views(tmp_path, _views(10, 10, num=2), prefix="b")
    _rewrite(tmp_path, first + _entries(tmp_path))
    groups = read_views(tmp_path)
    assert [(len(g), g.cameras.width, g.cameras.height) for g in groups] == [(3, 12, 8), (2, 10, 10)]


def test_rgb_and_grey_levels_are_thresholded_at_128(tmp_path):
    write_views(tmp_path, _views(num=1))
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[:, :6] = 200
    rgb[:, 6:9] = 100
    Image.fromarray(rgb).save(tmp_path / "view_000.png")
    (group,) = read_views(tmp_path)
    assert group.masks[0, :, :6].min() == 1 and group.masks[0, :, 6:].max() == 0


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: (p / "cameras.json").unlink(), "cameras.json is missing"),
        (lambda p: (p / "cameras.json").write_text("[{"), "not valid JSON"),
        (lambda p: (p / "cameras.json").write_text('{"file": 1}'), "must hold a JSON list"),
        (lambda p: (p / "cameras.json").write_text("[]"), "lists no cameras"),
        (lambda p: _rewrite(p, [{k: v for k, v in e.items() if k != "K"} for e in _entries(p)]), "entry 0 is missing K"),
        (lambda p: _rewrite(p, [dict(e, viewmat=[[1, 0], [0, 1]]) for e in _entries(p)]), "'viewmat' must be 4x4"),
        (lambda p: _rewrite(p, [dict(e, viewmat="eye") for e in _entries(p)]), "'viewmat' must be a 4x4"),
        (lambda p: _rewrite(p, [dict(e, viewmat=np.diag([2.0, 1, 1, 1]).tolist()) for e in _entries(p)]), "not a rotation"),
        (lambda p: _rewrite(p, [dict(e, K=[[0, 0, 1], [0, 5, 1], [0, 0, 1]]) for e in _entries(p)]), "positive focal"),
        (lambda p: _rewrite(p, [dict(e, width=0) for e in _entries(p)]), "'width' must be a positive integer"),
        (lambda p: _rewrite(p, [dict(e, height="8") for e in _entries(p)]), "'height' must be a positive integer"),
        (lambda p: (p / "view_001.png").unlink(), "view_001.png (camera entry 1) does not exist"),
        (lambda p: (p / "view_002.png").write_bytes(b"not a png"), "view_002.png (camera entry 2) cannot be read"),
        (lambda p: Image.new("L", (13, 8)).save(p / "view_000.png"), "is 13x8 but camera entry 0 says 12x8"),
        (lambda p: Image.new("I;16", (12, 8)).save(p / "view_000.png"), "expected 8-bit"),
    ],
)
def test_bad_folders_name_the_problem(folder, edit, message):
    path, _ = folder
    edit(path)
    with pytest.raises(ViewsError, match=None) as info:
        read_views(path)
    assert message in str(info.value)


def test_missing_folder(tmp_path):
    with pytest.raises(ViewsError, match="does not exist"):
        read_views(tmp_path / "nope")


def test_mask_views_checks_shapes():
    cams = orbit_cameras(torch.zeros(3), 2.0, [0.0], 20.0, width=4, height=3)
    with pytest.raises(ValueError, match="masks must be"):
        MaskViews(cams, torch.zeros(1, 4, 3))
