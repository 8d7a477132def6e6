"""The commands' up axis: detected from the file unless --up says otherwise, used by the orbit cameras, and
recorded in the .ply an edit writes. A -y-up capture renders upright like the +z-up original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from assets.default_scene import SCENE_PATH, load_default_scene
from engine.__main__ import main
from engine.io import save
from engine.io.detect_up import detect_up, save_with_up
from engine.rotate import turn_scene
from engine.scene import random_scene

SAMPLE = Path(__file__).resolve().parents[1] / "io" / "data" / "supersplat-64.compressed.ply"
VIEW = ["--width", "48", "--height", "48", "--azimuth", "60", "--elevation", "25", "--backend", "torch"]


def render(scene_path, out, *extra):
    assert main(["render", str(scene_path), "--out", str(out), *VIEW, *extra]) == 0
    return np.asarray(Image.open(out)).astype(int)


@pytest.fixture(scope="module")
def turned_robot(tmp_path_factory):
    """The robot turned to -y up, saved as a plain 3DGS .ply (no up comment: detected by the convention)."""
    path = tmp_path_factory.mktemp("up") / "robot_minus_y.ply"
    save(turn_scene(load_default_scene()[0], (0, 0, 1), (0, -1, 0)), path)
    return path


def test_a_minus_y_capture_renders_like_the_z_up_original(turned_robot, tmp_path):
    assert detect_up(turned_robot).up == (0.0, -1.0, 0.0)
    original = render(SCENE_PATH, tmp_path / "a.png")  # +z from its header
    turned = render(turned_robot, tmp_path / "b.png")  # -y from the convention
    assert np.abs(original - turned).max() <= 3 and np.abs(original - turned).mean() < 0.1
    sideways = render(turned_robot, tmp_path / "c.png", "--up", "z")  # the old behaviour: lying on its back
    assert np.abs(original - sideways).mean() > 5


def test_info_reports_the_detected_up(turned_robot, capsys):
    import json

    assert main(["info", str(SCENE_PATH)]) == 0
    robot = json.loads(capsys.readouterr().out)
    assert (robot["up"], robot["up_source"]) == ("+z", "file")
    assert main(["info", str(turned_robot)]) == 0
    turned = json.loads(capsys.readouterr().out)
    assert (turned["up"], turned["up_source"]) == ("-y", "format")


def test_up_option_overrides_detection(turned_robot, tmp_path):
    auto = render(turned_robot, tmp_path / "auto.png")
    assert np.array_equal(auto, render(turned_robot, tmp_path / "minus_y.png", "--up=-y"))
    assert np.array_equal(auto, render(turned_robot, tmp_path / "numbers.png", "--up", "0,-2,0"))
    assert not np.array_equal(auto, render(turned_robot, tmp_path / "plus_y.png", "--up", "+y"))


def test_bad_up_is_one_error_line(turned_robot, tmp_path, capsys):
    assert main(["render", str(turned_robot), "--out", str(tmp_path / "x.png"), "--up", "sideways"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --up") and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_a_real_supersplat_capture_is_orbited_around_minus_y(tmp_path):
    auto = render(SAMPLE, tmp_path / "auto.png")
    assert np.array_equal(auto, render(SAMPLE, tmp_path / "minus_y.png", "--up=-y"))
    assert not np.array_equal(auto, render(SAMPLE, tmp_path / "z.png", "--up", "z"))


def test_edit_orbits_the_detected_up_and_records_it_in_the_output(tmp_path):
    scene = random_scene(60, seed=3, extent=0.5, scale_range=(0.03, 0.08))
    save_with_up(scene, tmp_path / "scene.ply", (1.0, 0.0, 0.0))
    np.save(tmp_path / "mask.npy", np.ones(60, dtype=bool))
    base = ["edit", str(tmp_path / "scene.ply"), "--mask", str(tmp_path / "mask.npy"), "--prompt", "red",
            "--model", "closed-form:#d02020", "--steps", "2", "--resolution", "16", "--no-densify", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "out.ply")]) == 0
    assert detect_up(tmp_path / "out.ply").up == (1.0, 0.0, 0.0)
    assert main([*base, "--up=-z", "--out", str(tmp_path / "out2.ply")]) == 0
    assert detect_up(tmp_path / "out2.ply").up == (0.0, 0.0, -1.0)
