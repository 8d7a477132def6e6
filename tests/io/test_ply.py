"""3DGS .ply (INRIA layout): bit-exact round trips, foreign layouts, and malformed files."""

from __future__ import annotations

import numpy as np
import plyfile
import pytest
import torch

from engine.io import FormatError, load, save
from engine.io.ply import property_names, read_gaussian_ply, write_gaussian_ply
from engine.scene import random_scene
from tests.io.ply_builders import gaussian_rows, write_ply


def assert_scenes_equal(a, b):
    for (name, x), (_, y) in zip(a.items(), b.items()):
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), f"{name} differs"


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bit_exact(tmp_path, degree):
    scene = random_scene(300, sh_degree=degree, seed=degree)
    save(scene, tmp_path / "s.ply")
    loaded = load(tmp_path / "s.ply")
    assert loaded.sh_degree == degree
    assert_scenes_equal(scene, loaded)


def test_written_file_has_inria_header_and_opens_in_plyfile(tmp_path):
    scene = random_scene(50, sh_degree=3, seed=4)
    write_gaussian_ply(scene, tmp_path / "s.ply")
    raw = (tmp_path / "s.ply").read_bytes()
    header = raw[: raw.index(b"end_header\n") + len(b"end_header\n")].decode()
    expected = ["ply", "format binary_little_endian 1.0", "element vertex 50"]
    expected += [f"property float {name}" for name in property_names(3)] + ["end_header"]
    assert header.splitlines() == expected
    assert len(raw) == len(header) + 50 * 62 * 4
    # An independent reader sees INRIA's channel-major f_rest and zero normals.
    vertex = plyfile.PlyData.read(str(tmp_path / "s.ply"))["vertex"].data
    assert np.array_equal(vertex["nx"], np.zeros(50, np.float32))
    assert np.array_equal(vertex["f_rest_0"], scene.shN[:, 0, 0].numpy())  # R, coefficient 0
    assert np.array_equal(vertex["f_rest_15"], scene.shN[:, 0, 1].numpy())  # G, coefficient 0
    assert np.array_equal(vertex["f_rest_44"], scene.shN[:, 14, 2].numpy())  # B, coefficient 14
    assert np.array_equal(vertex["rot_0"], scene.quats[:, 0].numpy())  # w first


@pytest.mark.parametrize("fmt", ["ascii", "binary_big_endian"])
def test_reads_ascii_and_big_endian_exactly(tmp_path, fmt):
    scene = random_scene(40, sh_degree=2, seed=7)
    path = write_ply(tmp_path / "s.ply", [("vertex", gaussian_rows(scene))], fmt=fmt)
    assert_scenes_equal(scene, load(path))


def test_ascii_written_by_plyfile_reads_exactly(tmp_path):
    scene = random_scene(30, sh_degree=1, seed=8)
    element = plyfile.PlyElement.describe(gaussian_rows(scene), "vertex")
    plyfile.PlyData([element], text=True).write(str(tmp_path / "s.ply"))
    assert_scenes_equal(scene, load(tmp_path / "s.ply"))


def test_extra_properties_any_order_and_double_type(tmp_path):
    scene = random_scene(64, sh_degree=1, seed=9)
    names = ["rot_3", "opacity", "x", "label"] + [f"f_rest_{i}" for i in range(9)]
    names += ["scale_2", "scale_0", "scale_1", "y", "z", "f_dc_2", "f_dc_0", "f_dc_1", "rot_0", "rot_1", "rot_2"]
    rows = np.zeros(64, dtype=[(n, "f8") for n in names])
    source = gaussian_rows(scene, [n for n in names if n != "label"])
    for n in source.dtype.names:
        rows[n] = source[n]
    rows["label"] = np.arange(64)
    faces = np.zeros(2, dtype=[("id", "i4")])  # an unrelated element after the vertices is ignored
    path = write_ply(tmp_path / "s.ply", [("vertex", rows), ("extra", faces)])
    assert_scenes_equal(scene, load(path))


def test_large_file_reads_across_blocks(tmp_path, monkeypatch):
    import engine.io.ply as ply_module

    monkeypatch.setattr(ply_module, "BLOCK_BYTES", 1000)  # several blocks, last one partial
    scene = random_scene(1001, sh_degree=3, seed=10)
    write_gaussian_ply(scene, tmp_path / "s.ply")
    assert_scenes_equal(scene, read_gaussian_ply(tmp_path / "s.ply"))


def test_empty_scene_round_trip(tmp_path):
    scene = random_scene(0, sh_degree=1)
    save(scene, tmp_path / "e.ply")
    loaded = load(tmp_path / "e.ply")
    assert len(loaded) == 0 and loaded.sh_degree == 1


def test_float64_scene_is_written_as_float32(tmp_path):
    scene = random_scene(20, seed=2, dtype=torch.float64)
    save(scene, tmp_path / "s.ply")
    assert_scenes_equal(scene.to(dtype=torch.float32), load(tmp_path / "s.ply"))


# ------------------------------------------------------------------------------------------- malformed


def _rows(n=10, degree=0, names=None, seed=0):
    return gaussian_rows(random_scene(n, sh_degree=degree, seed=seed), names)


def test_truncated_binary_body(tmp_path):
    path = write_ply(tmp_path / "t.ply", [("vertex", _rows())], truncate=5)
    with pytest.raises(FormatError, match=r"t\.ply: truncated: the header declares 10 'vertex' rows"):
        load(path)


def test_absurd_vertex_count_in_small_file(tmp_path):
    path = write_ply(tmp_path / "big.ply", [("vertex", _rows(3))], counts=[10**12])
    assert path.stat().st_size < 2048
    with pytest.raises(FormatError, match=r"truncated: the header declares 1000000000000 'vertex' rows"):
        load(path)


def test_absurd_vertex_count_in_ascii_file(tmp_path):
    path = write_ply(tmp_path / "big.ply", [("vertex", _rows(3))], fmt="ascii", counts=[10**12])
    with pytest.raises(FormatError, match=r"header declares 1000000000000 vertices but the ascii body"):
        load(path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_values(tmp_path, value):
    rows = _rows()
    rows["scale_1"][4] = value
    path = write_ply(tmp_path / "nan.ply", [("vertex", rows)])
    with pytest.raises(FormatError, match=r"nan\.ply: invalid Gaussian values: scales has 1 Gaussian\(s\) with NaN/Inf values \(first at index 4\)"):
        load(path)


def test_unsupported_f_rest_count(tmp_path):
    names = property_names(0)
    names = names[:9] + [f"f_rest_{i}" for i in range(7)] + names[9:]
    rows = np.zeros(5, dtype=[(n, "f4") for n in names])
    rows["rot_0"] = 1
    path = write_ply(tmp_path / "sh7.ply", [("vertex", rows)])
    with pytest.raises(FormatError, match=r"unsupported property layout: 7 f_rest_\* properties \(expected 0, 9, 24 or 45"):
        load(path)


def test_f_rest_with_a_gap(tmp_path):
    names = property_names(1)
    names[names.index("f_rest_3")] = "f_rest_30"
    path = write_ply(tmp_path / "gap.ply", [("vertex", np.zeros(3, dtype=[(n, "f4") for n in names]))])
    with pytest.raises(FormatError, match=r"f_rest_\* properties are not numbered 0\.\.8 without gaps"):
        load(path)


def test_missing_rotation_properties(tmp_path):
    names = [n for n in property_names(0) if not n.startswith("rot_")]
    path = write_ply(tmp_path / "norot.ply", [("vertex", np.zeros(3, dtype=[(n, "f4") for n in names]))])
    with pytest.raises(FormatError, match=r"norot\.ply: 3DGS \.ply is missing required vertex properties: rot_0, rot_1, rot_2, rot_3"):
        load(path)


def test_ascii_with_non_numeric_token(tmp_path):
    path = write_ply(tmp_path / "a.ply", [("vertex", _rows(3))], fmt="ascii")
    text = path.read_text().splitlines()
    text[-2] = "banana " + text[-2].split(" ", 1)[1]
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(FormatError, match=r"a\.ply: malformed ascii PLY body"):
        load(path)


def test_ascii_with_missing_rows(tmp_path):
    path = write_ply(tmp_path / "a.ply", [("vertex", _rows(20))], fmt="ascii")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(FormatError, match=r"a\.ply: malformed ascii PLY body"):
        load(path)


DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_infinite_opacities_from_splat_transform_are_clamped():
    # alpha_bytes.splat (8 opacity bytes 255, 4 bytes 0) -> .compressed.ply -> .ply by splat-transform, which
    # reorders the Gaussians and writes those opacities as +Inf / -Inf
    path = DATA / "splat_transform_inf_opacity.ply"
    stored = plyfile.PlyData.read(str(path))["vertex"].data["opacity"]
    assert (stored == np.inf).sum() == 8 and (stored == -np.inf).sum() == 4
    notes = {}
    scene = load(path, notes=notes)
    alpha = torch.sigmoid(scene.opacities).numpy()
    assert notes["clamped_infinite_opacities"] == 12 and len(scene) == 24
    assert (alpha[stored == np.inf] > 0.999999 - 1e-7).all() and (alpha[stored == -np.inf] < 1.01e-6).all()
    finite = np.isfinite(stored)
    assert np.array_equal(scene.opacities.numpy()[finite], stored[finite])


@pytest.mark.parametrize("value, message", [
    (np.nan, r"opacities has 1 Gaussian\(s\) with NaN/Inf values"),
])  # fmt: skip
def test_nan_opacity_is_still_an_error(tmp_path, value, message):
    rows = _rows()
    rows["opacity"][2] = value
    with pytest.raises(FormatError, match=message):
        load(write_ply(tmp_path / "nan.ply", [("vertex", rows)]))


def test_inf_opacity_written_by_hand_is_clamped_and_counted(tmp_path):
    rows = _rows()
    rows["opacity"][:3] = [np.inf, -np.inf, np.inf]
    notes = {}
    scene = load(write_ply(tmp_path / "inf.ply", [("vertex", rows)]), notes=notes)
    from engine.io.ply import OPACITY_LOGIT_LIMIT

    assert notes == {"clamped_infinite_opacities": 3}
    assert scene.opacities[:3].tolist() == pytest.approx([OPACITY_LOGIT_LIMIT, -OPACITY_LOGIT_LIMIT, OPACITY_LOGIT_LIMIT])


def test_utf8_header_comment_is_accepted(tmp_path):
    path = write_ply(tmp_path / "c.ply", [("vertex", _rows())])
    data = path.read_bytes().replace(b"comment written by tests", "comment écrit par Åsa ✓".encode())
    path.write_bytes(data)
    assert len(load(path)) == len(_rows())
    path.write_bytes(data.replace(b"property float x", "property float x\u00e9".encode()))
    with pytest.raises(FormatError, match=r"non-ASCII characters outside a comment"):
        load(path)
