"""Mesh / point-cloud files that declare more than they hold are refused before open3d sees them, at
baseline memory and in well under a second; the KHR Gaussian-splatting .glb gets its own clear message."""

from __future__ import annotations

import resource
import struct
import time
from pathlib import Path

import pytest

from engine.io import FormatError, load

DATA = Path(__file__).parent / "data"
GIGA = 10**9
XYZ = b"property float x\nproperty float y\nproperty float z\n"


def _ply(body_bytes: int, vertices: int, faces: int | None = None, fmt: str = "binary_little_endian") -> bytes:
    head = b"ply\nformat " + fmt.encode() + b" 1.0\nelement vertex " + str(vertices).encode() + b"\n" + XYZ
    if faces is not None:
        head += b"element face " + str(faces).encode() + b"\nproperty list uchar int vertex_indices\n"
    return head + b"end_header\n" + bytes(body_bytes)


PCD = (b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\n"
       b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {mode}\n")  # fmt: skip

CASES = {
    # the files: 10^9 vertices in tiny files
    "giga.off": (b"OFF\n1000000000 1 0\n0 0 0\n", r"absurd vertex count 1000000000"),
    "giga_mesh.ply": (_ply(59_000, GIGA, 10), r"absurd 'vertex' count 1000000000"),
    "giga_cloud.ply": (_ply(72_000, GIGA), r"absurd 'vertex' count 1000000000"),
    "giga.pcd": (PCD.replace(b"{n}", b"1000000000").replace(b"{mode}", b"binary") + bytes(100),
                 r"absurd point count 1000000000"),
    "giga_faces.ply": (_ply(36, 3, GIGA), r"absurd 'face' count 1000000000"),
    # counts under the cap that still cannot fit
    "big.off": (b"OFF\n1000000 1000000 0\n0 0 0\n", r"declares 1000000 vertices and 1000000 faces, which needs"),
    "big_cloud.ply": (_ply(72_000, 10**7), r"declares 10000000 'vertex', which needs at least 120000000 bytes"),
    "big_faces.ply": (_ply(36, 3, 10**6), r"declares 3 'vertex', 1000000 'face'"),
    "big_ascii.ply": (_ply(100, 10**6, fmt="ascii"), r"declares 1000000 'vertex'"),
    "truncated_cloud.ply": (_ply(12 * 99, 100), r"truncated or corrupt: the header declares 100 'vertex'"),
    "big.pcd": (PCD.replace(b"{n}", b"50000000").replace(b"{mode}", b"ascii") + b"0 0 0\n",
                r"declares 50000000 points"),
    "lzf.pcd": (PCD.replace(b"{n}", b"10000000").replace(b"{mode}", b"binary_compressed") + struct.pack("<II", 10, 120_000_000) + bytes(10),
                r"120000000 bytes compressed to 10"),  # fmt: skip
    "big.stl": (bytes(80) + struct.pack("<I", 10**8) + bytes(500), r"declares 100000000 binary STL triangles"),
    "pcd_mode.pcd": (PCD.replace(b"{n}", b"1").replace(b"{mode}", b"zip"), r"unknown PCD DATA mode 'zip'"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_declared_counts_that_cannot_fit_are_refused_cheaply(tmp_path, name):
    content, message = CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(FormatError, match=message) as info:
        load(path)
    assert time.perf_counter() - start < 5.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing was allocated
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_ascii_stl_and_real_meshes_pass(tmp_path):
    pytest.importorskip("open3d", exc_type=ImportError, reason="open3d or a library it loads (libusb) is missing")
    stl = b"solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nendfacet\nendsolid t\n"
    (tmp_path / "t.stl").write_bytes(stl)
    assert len(load(tmp_path / "t.stl")) > 0
    (tmp_path / "t.off").write_bytes(b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    assert len(load(tmp_path / "t.off")) > 0


def test_gaussian_glb_is_not_sent_to_open3d():
    from engine.io.mesh import load_mesh_or_points

    with pytest.raises(FormatError, match=r"this glTF holds Gaussian splats \(KHR_gaussian_splatting\), not a mesh"):
        load_mesh_or_points(DATA / "splat_transform_gaussians.glb")


def test_glb_accessor_larger_than_its_buffer(tmp_path):
    import json

    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 12}], "bufferViews": [{"buffer": 0, "byteLength": 12}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "type": "VEC3", "count": 10**8}]}  # fmt: skip
    raw = json.dumps(doc).encode()
    raw += b" " * (-len(raw) % 4)
    body = struct.pack("<II", 12, 0x004E4942) + bytes(12)
    glb = b"glTF" + struct.pack("<II", 2, 12 + 8 + len(raw) + len(body)) + struct.pack("<II", len(raw), 0x4E4F534A) + raw + body
    (tmp_path / "lie.glb").write_bytes(glb)
    with pytest.raises(FormatError, match=r"an accessor declares 100000000 elements"):
        load(tmp_path / "lie.glb")


def test_an_open3d_that_cannot_load_its_libraries_is_named(tmp_path, monkeypatch):
    """open3d installed but its shared library missing (libusb on a bare Debian): the error says so and how to
    fix it, instead of "pip install open3d"."""
    import importlib.abc
    import sys

    from engine.io.errors import FormatError

    class BrokenOpen3d(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "open3d":
                raise ImportError("libusb-1.0.so.0: cannot open shared object file: No such file or directory")
            return None

    monkeypatch.delitem(sys.modules, "open3d", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenOpen3d(), *sys.meta_path])
    (tmp_path / "t.off").write_bytes(b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(FormatError, match="installed but cannot load.*libusb.*apt-get install libusb-1.0-0"):
        load(tmp_path / "t.off")
