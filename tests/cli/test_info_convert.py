"""`python -m engine info` and `convert`: JSON facts, conversions between all formats, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.__main__ import main
from engine.io import load, save
from engine.scene import random_scene

ROOT = Path(__file__).resolve().parents[2]


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_info_prints_json(tmp_path, capsys):
    scene = random_scene(123, sh_degree=2, seed=1)
    save(scene, tmp_path / "s.ply")
    assert main(["info", str(tmp_path / "s.ply")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(tmp_path / "s.ply")
    assert (info["format"], info["count"], info["sh_degree"]) == ("ply", 123, 2)
    lo, hi = scene.bounding_box()
    assert info["bbox"] == {"min": lo.tolist(), "max": hi.tolist()}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("nothing.spz", None, "no such file"),
        ("garbage.spz", b"\x1f\x8bnot really gzip", "corrupt gzip data"),
        ("odd.splat", b"\0" * 31, "not a multiple of 32"),
        ("x.foo", b"123", "unknown file extension"),
    ],
)
def test_info_errors_are_one_line_with_exit_code_2(tmp_path, capsys, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    assert main(["info", str(tmp_path / name)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.count("\n") == 1 and out.err.startswith(f"error: {tmp_path / name}: ") and message in out.err


def test_info_on_an_empty_scene_has_no_bbox(tmp_path, capsys):
    save(random_scene(0), tmp_path / "e.ply")
    assert main(["info", str(tmp_path / "e.ply")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 0 and info["bbox"] is None


@pytest.mark.parametrize("source", ["ply", "splat", "spz"])
@pytest.mark.parametrize("target", ["ply", "splat", "spz"])
def test_convert_between_every_writable_format(tmp_path, capsys, source, target):
    scene = random_scene(50, sh_degree=1, seed=2)
    src, dst = tmp_path / f"in.{source}", tmp_path / f"out.{target}"
    save(scene, src)
    assert main(["convert", str(src), str(dst)]) == 0
    out = capsys.readouterr()
    assert f"wrote {dst}: 50 Gaussians" in out.out
    converted = load(dst)
    expected = load(src)
    assert len(converted) == 50
    assert converted.sh_degree == (0 if "splat" in (source, target) else 1)
    tolerance = 0.5 / 4096 + 1e-6 if "spz" in (source, target) else 0.0
    assert (converted.means - expected.means).abs().max() <= tolerance
    if target == "splat" and source != "splat":
        assert "SH degree 1 dropped to 0" in out.err


def test_convert_ply_to_ply_is_lossless_and_spz_version_is_honoured(tmp_path, capsys):
    scene = random_scene(40, sh_degree=3, seed=3)
    save(scene, tmp_path / "a.ply")
    assert main(["convert", str(tmp_path / "a.ply"), str(tmp_path / "b.ply"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()
    assert main(["convert", str(tmp_path / "a.ply"), str(tmp_path / "c.spz"), "--spz-version", "4"]) == 0
    assert (tmp_path / "c.spz").read_bytes()[:4] == b"NGSP"


def test_convert_failure_leaves_no_output(tmp_path, capsys):
    (tmp_path / "bad.splat").write_bytes(b"\0" * 33)
    (tmp_path / "out.ply").write_bytes(b"previous")
    assert main(["convert", str(tmp_path / "bad.splat"), str(tmp_path / "out.ply")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "not a multiple of 32" in err
    assert (tmp_path / "out.ply").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.splat", "out.ply"]
    assert main(["convert", str(tmp_path / "out.ply"), str(tmp_path / "x.obj")]) == 2  # bad input first
    save(random_scene(3), tmp_path / "ok.ply")
    assert main(["convert", str(tmp_path / "ok.ply"), str(tmp_path / "x.obj")]) == 2
    assert "cannot write '.obj' files" in capsys.readouterr().err
    assert not (tmp_path / "x.obj").exists()


def test_subprocess_info_convert_help_and_errors(tmp_path):
    save(random_scene(30, sh_degree=1, seed=4), tmp_path / "s.ply")
    done = run_module("info", str(tmp_path / "s.ply"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 30

    done = run_module("convert", str(tmp_path / "s.ply"), str(tmp_path / "s.spz"))
    assert done.returncode == 0, done.stderr
    assert torch.allclose(load(tmp_path / "s.spz").means, load(tmp_path / "s.ply").means, atol=2e-4)

    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\n"
                                          b"property float x\nproperty float opacity\nend_header\n")  # fmt: skip
    done = run_module("info", str(tmp_path / "broken.ply"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    # the declared size is checked before anything is read (engine/io/memory_budget.py): a count the file cannot
    # hold is said to be truncated, with the count
    assert done.stderr.startswith(f"error: {tmp_path / 'broken.ply'}: truncated: the header declares 1000000000000 ")

    done = run_module("--help")
    assert done.returncode == 0 and "info" in done.stdout and "convert" in done.stdout
    done = run_module("convert", "--help")
    assert done.returncode == 0 and ".spz" in done.stdout and "--spz-version" in done.stdout
    done = run_module("info", "--help")
    assert done.returncode == 0 and "bbox" in done.stdout


DATA = Path(__file__).resolve().parents[1] / "io" / "data"


@pytest.mark.parametrize("target", ["out.sog", "meta.json", "out.compressed.ply"])
def test_convert_to_sog_and_compressed_ply(tmp_path, capsys, target):
    scene = random_scene(300, sh_degree=2, seed=5)
    save(scene, tmp_path / "in.ply")
    assert main(["convert", str(tmp_path / "in.ply"), str(tmp_path / target)]) == 0
    assert f"wrote {tmp_path / target}: 300 Gaussians, SH degree 2" in capsys.readouterr().out
    back = load(tmp_path / target)
    # both writers store Morton order: compare the sets of positions
    a = np.sort(scene.means.numpy(), axis=0)
    b = np.sort(back.means.numpy(), axis=0)
    assert back.sh_degree == 2 and np.abs(a - b).max() < 5e-3


def test_convert_checks_the_output_before_reading_the_input(tmp_path, capsys):
    (tmp_path / "huge.ply").write_bytes(b"not even read")
    assert main(["convert", str(tmp_path / "huge.ply"), str(tmp_path / "out.docx")]) == 2
    assert "cannot write '.docx' files" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "huge.ply"), str(tmp_path / "no" / "out.ply")]) == 2
    assert "folder" in capsys.readouterr().err


def test_convert_spz_frame_choice(tmp_path, capsys):
    src = DATA / "splat_transform_from_alpha_bytes.spz"  # written by splat-transform: raw stored values
    assert main(["convert", str(src), str(tmp_path / "raw.ply"), "--quiet"]) == 0  # raw is the default
    assert main(["convert", str(src), str(tmp_path / "spec.ply"), "--spz-frame", "spec", "--quiet"]) == 0
    raw, spec = load(tmp_path / "raw.ply"), load(tmp_path / "spec.ply")
    assert torch.allclose(raw.means * torch.tensor([1.0, -1.0, -1.0]), spec.means)
    from engine.io.splat import read_splat

    assert (raw.means - read_splat(DATA / "alpha_bytes.splat").means).abs().max() < 1e-3


def test_info_reports_clamped_infinite_opacities(capsys):
    assert main(["info", str(DATA / "splat_transform_inf_opacity.ply")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["notes"] == {"clamped_infinite_opacities": 12} and info["count"] == 24
    assert main(["info", str(DATA / "splat_transform_sh3.sog")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["count"], info["sh_degree"], info["notes"]) == ("sog", 96, 3, {})
