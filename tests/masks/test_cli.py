"""`python -m engine mask`: views folder and SAM-click paths, and one-line errors that leave nothing behind."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.__main__ import main
from engine.io import save
from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import ground_truth_masks, orbit_views, part_ious, toy_parts_scene
from engine.masks.views_io import MaskViews, read_views, write_views


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A toy scene file and a views folder with the head's masks in 16 views at 40x40."""
    root = tmp_path_factory.mktemp("mask_cli")
    scene, ids, names = toy_parts_scene(1500, colour_noise=0.0, seed=2)
    save(scene, root / "toy.ply")
    cams = orbit_views(scene, 16, width=40, height=40)
    head = names.index("head")
    masks = ground_truth_masks(compositing_weights(scene, cams), ids, len(names))[..., head]
    write_views(root / "views", MaskViews(cams, masks))
    return root, ids == head


def _run(capsys, *argv):
    code = main(["mask", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("method", ["galp", "vote"])
def test_views_folder_to_mask(files, tmp_path, capsys, method):
    root, head = files
    code, out, err = _run(capsys, root / "toy.ply", "--views", root / "views", "--method", method,
                          "--out", tmp_path / "head.npy")
    assert code == 0, err
    weights = np.load(tmp_path / "head.npy")
    assert weights.dtype == np.float32 and weights.shape == (len(head),)
    assert weights.min() >= 0 and weights.max() <= 1
    summary = json.loads(out)
    assert summary["method"] == method and summary["views"] == 16 and summary["count"] == len(head)
    assert part_ious(torch.from_numpy(weights)[None], torch.where(head, 0, 1), 0.5)[0] > 0.85


def test_threshold_writes_a_hard_mask(files, tmp_path, capsys):
    root, head = files
    code, out, err = _run(capsys, root / "toy.ply", "--views", root / "views", "--out", tmp_path / "m.npy",
                          "--threshold", "0.5", "--steps", "20")
    assert code == 0, err
    weights = np.load(tmp_path / "m.npy")
    assert set(np.unique(weights).tolist()) <= {0.0, 1.0}
    assert json.loads(out)["selected"] == int(weights.sum())


def test_click_with_sam(files, tmp_path, capsys, tiny_sam):
    root, head = files
    path, config = tiny_sam
    config.to_json(tmp_path / "tiny.json")
    code, out, err = _run(
        capsys, root / "toy.ply", "--click", "30,15,32,20", "--size", "64x64", "--sam", path,
        "--sam-config", tmp_path / "tiny.json", "--num-views", "4", "--view-size", "48",
        "--save-views", tmp_path / "sam_views", "--out", tmp_path / "click.npy", "--steps", "10",
        "--up", "z",  # the toy is +z up; a .ply without an up comment would be taken as -y up (3DGS convention)
    )
    assert code == 0, err
    summary = json.loads(out)
    assert np.load(tmp_path / "click.npy").shape == (len(head),)
    assert len(summary["point"]) == 3 and summary["views"] + summary["skipped_views"] == 5
    saved = read_views(tmp_path / "sam_views")
    assert sum(len(g) for g in saved) == summary["views"]


def _views_copy(files, tmp_path):
    import shutil

    root, _ = files
    shutil.copytree(root / "views", tmp_path / "views")
    return tmp_path / "views"


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda v: (v / "view_003.png").unlink(), "view_003.png (camera entry 3) does not exist"),
        (lambda v: (v / "view_004.png").write_bytes(b"\x89PNG broken"), "view_004.png (camera entry 4) cannot be read"),
        (lambda v: Image.new("L", (41, 40)).save(v / "view_000.png"), "is 41x40 but camera entry 0 says 40x40"),
        (lambda v: (v / "cameras.json").write_text('[{"file": "view_000.png"'), "cameras.json is not valid JSON"),
        (lambda v: (v / "cameras.json").write_text('[{"file": "view_000.png"}]'), "entry 0 is missing viewmat"),
    ],
)
def test_bad_views_folders(files, tmp_path, capsys, breakage, message):
    root, _ = files
    views = _views_copy(files, tmp_path)
    breakage(views)
    code, out, err = _run(capsys, root / "toy.ply", "--views", views, "--out", tmp_path / "m.npy")
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "m.npy").exists() and out == ""


def test_click_outside_the_scene(files, tmp_path, capsys, tiny_sam):
    root, _ = files
    path, config = tiny_sam
    config.to_json(tmp_path / "tiny.json")
    code, out, err = _run(capsys, root / "toy.ply", "--click", "30,15,1,1", "--size", "64x64", "--sam", path,
                          "--sam-config", tmp_path / "tiny.json", "--out", tmp_path / "m.npy")
    assert code == 2 and "hits no Gaussian" in err
    assert not (tmp_path / "m.npy").exists()


def test_missing_sam_checkpoint(files, tmp_path, capsys):
    root, _ = files
    code, out, err = _run(capsys, root / "toy.ply", "--click", "30,15,32,32", "--sam", tmp_path / "sam_vit_b.pth",
                          "--out", tmp_path / "m.npy")
    assert code == 2 and "does not exist" in err and "sam_vit_b_01ec64.pth" in err
    assert not (tmp_path / "m.npy").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--click", "30,15,32,32"], "--click needs a SAM checkpoint"),
        (["--click", "30,15,600,32", "--sam", "x.pth"], "outside the 512x512 view"),
        (["--click", "30,15", "--sam", "x.pth"], "AZ,EL,X,Y"),
        (["--views", "VIEWS", "--threshold", "1.5"], "--threshold must be in [0, 1)"),
        (["--views", "VIEWS", "--out", "nowhere/m.npy"], "folder nowhere does not exist"),
        (["--views", "VIEWS", "--out", "m.txt"], "must name a .npy file"),
        (["--views", "missing_dir"], "missing_dir does not exist"),
    ],
)
def test_bad_arguments(files, tmp_path, capsys, monkeypatch, extra, message):
    root, _ = files
    monkeypatch.chdir(tmp_path)
    extra = [str(root / "views") if e == "VIEWS" else e for e in extra]
    argv = [root / "toy.ply", *extra] + ([] if "--out" in extra else ["--out", "m.npy"])
    code, out, err = _run(capsys, *argv)
    assert code == 2 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_missing_scene(tmp_path, capsys, files):
    root, _ = files
    code, out, err = _run(capsys, tmp_path / "nope.ply", "--views", root / "views", "--out", tmp_path / "m.npy")
    assert code == 2 and "nope.ply" in err
    assert not (tmp_path / "m.npy").exists()
