"""engine.io's entry points: format detection, dispatch (incl. meshes), path errors and atomic saves."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

import engine.io as io
from engine.io import FormatError, detect_format, load, save
from engine.scene import random_scene
from tests.io.ply_builders import gaussian_rows, write_ply


def test_detects_every_written_format(tmp_path):
    scene = random_scene(20, sh_degree=1, seed=1)
    for name, fmt in (("a.ply", "ply"), ("a.splat", "splat"), ("a.spz", "spz"), ("UPPER.SPZ", "spz"),
                      ("a.compressed.ply", "compressed_ply"), ("a.sog", "sog"), ("meta.json", "sog")):
        save(scene, tmp_path / name)
        assert detect_format(tmp_path / name) == fmt
        assert len(load(tmp_path / name)) == 20


def test_ply_flavours_are_told_apart_by_header(tmp_path):
    points = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1")])
    assert detect_format(write_ply(tmp_path / "p.ply", [("vertex", points)])) == "point_cloud"
    faces = np.zeros(0, dtype=[("a", "i4")])
    assert detect_format(write_ply(tmp_path / "p0.ply", [("vertex", points), ("face", faces)])) == "point_cloud"
    mesh = (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")  # fmt: skip
    (tmp_path / "m.ply").write_bytes(mesh)
    assert detect_format(tmp_path / "m.ply") == "mesh"
    assert detect_format(write_ply(tmp_path / "g.ply", [("vertex", gaussian_rows(random_scene(3)))])) == "ply"
    for name in ("x.obj", "x.glb", "x.gltf", "x.off", "x.stl"):
        (tmp_path / name).write_bytes(b"data")
        assert detect_format(tmp_path / name) == "mesh"
    for name in ("x.pcd", "x.xyz"):
        (tmp_path / name).write_bytes(b"data")
        assert detect_format(tmp_path / name) == "point_cloud"


def test_meshes_and_point_clouds_go_to_the_mesh_module(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("engine.io.mesh")
    fake.load_mesh_or_points = lambda path: calls.append(path) or random_scene(7)
    monkeypatch.setitem(sys.modules, "engine.io.mesh", fake)
    monkeypatch.setattr(io, "mesh", fake, raising=False)
    (tmp_path / "bunny.obj").write_bytes(b"v 0 0 0\n")
    points = np.zeros(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    write_ply(tmp_path / "cloud.ply", [("vertex", points)])
    assert len(load(tmp_path / "bunny.obj")) == 7
    assert len(load(tmp_path / "cloud.ply")) == 7
    assert [p.name for p in calls] == ["bunny.obj", "cloud.ply"]


def test_unknown_extension(tmp_path):
    (tmp_path / "scene.foo").write_bytes(b"1234")
    with pytest.raises(FormatError, match=r"scene\.foo: unknown file extension '\.foo' \(readable: \.ply"):
        load(tmp_path / "scene.foo")


def test_nonexistent_path(tmp_path):
    with pytest.raises(FormatError, match=r"missing\.ply: no such file"):
        load(tmp_path / "missing.ply")


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "dir.ply").mkdir()
    with pytest.raises(FormatError, match=r"dir\.ply: is a directory, not a scene file"):
        load(tmp_path / "dir.ply")


def test_format_error_is_a_value_error_naming_the_file(tmp_path):
    with pytest.raises(ValueError) as info:
        load(tmp_path / "nothing.splat")
    assert info.value.path == str(tmp_path / "nothing.splat") and info.value.problem == "no such file"


def test_save_rejects_unwritable_formats(tmp_path):
    scene = random_scene(3)
    with pytest.raises(FormatError, match=r"cannot write '\.obj' files \(writable: \.ply, \.compressed\.ply, \.splat"):
        save(scene, tmp_path / "x.obj")
    with pytest.raises(FormatError, match=r"spz_version only applies to \.spz output"):
        save(scene, tmp_path / "x.sog", spz_version=3)
    with pytest.raises(ValueError, match=r"spz_frame must be one of spec, raw"):
        save(scene, tmp_path / "x.spz", spz_frame="rub")
    with pytest.raises(FormatError, match=r"folder .* does not exist"):
        save(scene, tmp_path / "no" / "such" / "x.ply")
    with pytest.raises(FormatError, match=r"cannot write SPZ version 1"):
        save(scene, tmp_path / "x.spz", spz_version=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import engine.io.ply as ply_module

    target = tmp_path / "keep.ply"
    target.write_bytes(b"old content")

    def exploding_writer(scene, path):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ply_module, "write_gaussian_ply", exploding_writer)
    with pytest.raises(OSError, match="disk full"):
        save(random_scene(5), target)
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.ply"]


def test_writer_errors_name_the_target_not_the_temporary(tmp_path):
    scene = random_scene(2).replace(scales=torch.full((2, 3), 200.0))  # exp overflows float32
    with pytest.raises(FormatError, match=r"huge\.splat: cannot write \.splat: a scale overflows float32"):
        save(scene, tmp_path / "huge.splat")
    assert list(tmp_path.iterdir()) == []


def test_save_moves_gpu_or_grad_tensors_to_cpu_values(tmp_path):
    scene = random_scene(10, sh_degree=1).map(lambda t: t.clone().requires_grad_(True))
    save(scene, tmp_path / "g.ply")
    assert torch.equal(load(tmp_path / "g.ply").means, scene.means.detach())


def test_mesh_import_unavailable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "engine.io.mesh", None)  # as if mesh.py / open3d were missing
    (tmp_path / "bunny.obj").write_bytes(b"v 0 0 0\n")
    with pytest.raises(FormatError, match=r"bunny\.obj: mesh / point-cloud import is not available here"):
        load(tmp_path / "bunny.obj")


def test_saved_files_get_normal_permissions(tmp_path):
    import os
    import stat

    from engine.io import save
    from engine.scene import random_scene

    umask = os.umask(0o022)
    try:
        out = tmp_path / "perm.ply"
        save(random_scene(3), out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
    finally:
        os.umask(umask)
