"""Meshes and point clouds -> Gaussians (engine/io/mesh.py): sampling, colours, sizes, bad files."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

o3d = pytest.importorskip("open3d", exc_type=ImportError)

from engine.io import FormatError, load  # noqa: E402
from engine.io.mesh import MESH_OPACITY, POINT_OPACITY, load_mesh_or_points  # noqa: E402
from engine.render.projection import quat_to_rotmat  # noqa: E402

BLUE = (0.2, 0.4, 0.9)
RED_TOP_BLUE_BOTTOM = np.concatenate([np.tile([255, 0, 0], (4, 8, 1)), np.tile([0, 0, 255], (4, 8, 1))]).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- writers
def write_box(path: Path, color=BLUE) -> Path:
    box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)
    box.paint_uniform_color(color)
    assert o3d.io.write_triangle_mesh(str(path), box)
    return path


def write_textured_quad_obj(folder: Path) -> Path:
    """The unit quad in z = 0; its texture is red in the image's top half, blue in the bottom half, so with
    the OBJ convention (v = 1 at the image top) the quad is red for y > 0.5 and blue for y < 0.5."""
    from PIL import Image

    Image.fromarray(RED_TOP_BLUE_BOTTOM).save(folder / "tex.png")
    (folder / "quad.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd tex.png\n")
    (folder / "quad.obj").write_text(
        "mtllib quad.mtl\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "usemtl m\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
    )
    return folder / "quad.obj"


def write_textured_quad_glb(path: Path) -> Path:
    """The same quad as a binary glTF written by hand (glTF puts uv (0, 0) at the image's top-left)."""
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(RED_TOP_BLUE_BOTTOM).save(png, format="PNG")
    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    indices = np.array([0, 1, 2, 0, 2, 3], np.uint32)
    blobs = [positions.tobytes(), uvs.tobytes(), indices.tobytes(), png.getvalue()]
    views, binary = [], b""
    for blob in blobs:
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(blob)})
        binary += blob + b"\0" * (-len(blob) % 4)
    gltf = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}],
        "images": [{"bufferView": 3, "mimeType": "image/png"}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5125, "count": 6, "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks)
    return path


def write_cloud(path: Path, points, colors=None, normals=None) -> Path:
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    if colors is not None:
        cloud.colors = o3d.utility.Vector3dVector(np.asarray(colors, dtype=np.float64))
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(np.asarray(normals, dtype=np.float64))
    assert o3d.io.write_point_cloud(str(path), cloud)
    return path


def sphere_points(num: int, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).normal(size=(num, 3))
    return 0.5 * p / np.linalg.norm(p, axis=1, keepdims=True)


def disc_axes(scene) -> np.ndarray:
    """[N, 3] the thin axis (local z) of every Gaussian in world space."""
    return quat_to_rotmat(scene.quats)[:, :, 2].numpy()


# ---------------------------------------------------------------------------------------------- meshes
@pytest.mark.parametrize("suffix", [".ply", ".obj", ".off"])
def test_coloured_box_becomes_flat_discs_on_its_faces(tmp_path, suffix):
    scene = load(write_box(tmp_path / f"box{suffix}"))  # through the public dispatcher
    assert 2_000 <= len(scene) <= 200_000
    means = scene.means.numpy()
    assert means.min() > -1e-5 and means.max() < 1 + 1e-5
    assert np.allclose(means.min(axis=0), 0, atol=0.02) and np.allclose(means.max(axis=0), 1, atol=0.02)
    # on the surface: some coordinate is 0 or 1
    assert np.minimum(np.abs(means), np.abs(means - 1)).min(axis=1).max() < 1e-5
    assert np.allclose(scene.base_colors().numpy(), BLUE, atol=2e-3)
    assert torch.allclose(scene.activated_opacities(), torch.tensor(MESH_OPACITY), atol=1e-5)
    # each disc's thin axis is the normal of the face it lies on
    face_axis = np.argmin(np.minimum(np.abs(means), np.abs(means - 1)), axis=1)
    axes = np.abs(disc_axes(scene))
    assert np.all(axes[np.arange(len(means)), face_axis] > 0.999)
    scales = scene.activated_scales().numpy()
    spacing = np.sqrt(6.0 / len(scene))
    assert np.all((scales[:, 0] > 0.3 * spacing) & (scales[:, 0] < 3 * spacing))
    assert np.allclose(scales[:, 0], scales[:, 1]) and np.allclose(scales[:, 2], 0.2 * scales[:, 0], rtol=1e-4)


def test_sample_count_follows_the_request_and_the_cap(tmp_path):
    box = write_box(tmp_path / "box.ply")
    for wanted in (1_000, 8_000):
        assert len(load_mesh_or_points(box, num_samples=wanted)) == pytest.approx(wanted, rel=0.2)
    assert len(load_mesh_or_points(box, max_samples=3_000)) == pytest.approx(3_000, rel=0.2)
    small = load_mesh_or_points(box, max_samples=3_000, seed=1)
    again = load_mesh_or_points(box, max_samples=3_000, seed=1)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(small.items(), again.items()))  # deterministic


def test_default_count_grows_with_the_surface_area(tmp_path):
    quad = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1e-3)  # about two unit faces
    assert o3d.io.write_triangle_mesh(str(tmp_path / "flat.ply"), quad)
    box = write_box(tmp_path / "box.ply")
    n_flat = len(load_mesh_or_points(tmp_path / "flat.ply", max_samples=10**6))
    n_box = len(load_mesh_or_points(box, max_samples=10**6))
    assert n_flat < n_box  # both span a similar diagonal; the box has three times the area


def test_vertex_colours_are_interpolated(tmp_path):
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)),
        o3d.utility.Vector3iVector(np.array([[0, 1, 2], [0, 2, 3]])),
    )
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0]], float))
    assert o3d.io.write_triangle_mesh(str(tmp_path / "ramp.ply"), mesh)
    scene = load(tmp_path / "ramp.ply")
    x = scene.means[:, 0].numpy()
    rgb = scene.base_colors().numpy()
    assert np.allclose(rgb[:, 0], 1 - x, atol=0.01) and np.allclose(rgb[:, 2], x, atol=0.01)


@pytest.mark.parametrize("writer", [write_textured_quad_obj, lambda d: write_textured_quad_glb(d / "quad.glb")],
                         ids=["obj", "glb"])
def test_texture_colours_each_half(tmp_path, writer):
    scene = load(writer(tmp_path))
    y = scene.means[:, 1].numpy()
    rgb = scene.base_colors().numpy()
    top, bottom = rgb[y > 0.6], rgb[y < 0.4]  # away from the bilinear blend at y = 0.5
    assert len(top) > 100 and len(bottom) > 100
    assert np.allclose(top, (1, 0, 0), atol=0.02), top.mean(axis=0)
    assert np.allclose(bottom, (0, 0, 1), atol=0.02), bottom.mean(axis=0)
    assert np.allclose(np.abs(disc_axes(scene)[:, 2]), 1.0, atol=1e-5)  # discs lie in the quad


def test_mesh_without_colours_is_grey(tmp_path):
    path = tmp_path / "tri.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    rgb = load(path).base_colors().numpy()
    assert np.allclose(rgb, 0.7, atol=1e-3)


def test_sampled_box_renders_without_holes(tmp_path):
    """The discs facing a close camera cover the box's silhouette completely."""
    from scipy.ndimage import binary_erosion

    from engine.camera import orbit_cameras
    from engine.render import render

    scene = load_mesh_or_points(write_box(tmp_path / "box.ply"), num_samples=3_000)  # discs ~3 px wide
    cams = orbit_cameras(torch.tensor([0.5, 0.5, 0.5]), 2.2, [30, 210], [25, -30], width=80, height=80)
    for c in range(len(cams)):
        facing = ((cams.centers[c] - scene.means) * torch.from_numpy(disc_axes(scene))).sum(dim=1) > 0
        with torch.no_grad():
            alpha = render(scene.subset(facing), cams[c]).alpha[0, ..., 0].numpy()
        inside = binary_erosion(alpha > 0.5, iterations=2)
        assert inside.sum() > 500
        assert (alpha[inside] < 0.97).mean() < 0.01


# ---------------------------------------------------------------------------------------------- point clouds
def test_point_cloud_one_gaussian_per_point(tmp_path):
    points = sphere_points(3_000)
    colors = np.random.default_rng(1).random((3_000, 3))
    scene = load(write_cloud(tmp_path / "cloud.pcd", points, colors))
    assert len(scene) == 3_000
    order = np.lexsort(points.T)
    got = scene.means.numpy()
    assert np.allclose(got[np.lexsort(got.T)], points[order], atol=1e-6)
    rgb = scene.base_colors().numpy()[np.lexsort(got.T)]
    assert np.allclose(rgb, colors[order], atol=1 / 255)  # .pcd stores 8-bit colour
    assert torch.allclose(scene.activated_opacities(), torch.tensor(POINT_OPACITY), atol=1e-5)
    scales = scene.activated_scales().numpy()
    assert np.allclose(scales, scales[:, :1])  # isotropic without normals
    from scipy.spatial import cKDTree

    nearest = cKDTree(points).query(points, k=2)[0][:, 1]
    ratio = np.median(scales[:, 0]) / np.median(nearest)
    assert 0.5 < ratio < 3.0


def test_point_cloud_with_normals_gives_discs_across_them(tmp_path):
    points = sphere_points(2_000)
    scene = load(write_cloud(tmp_path / "cloud.ply", points, normals=points * 2.0))
    axes = disc_axes(scene)
    radial = scene.means.numpy() / np.linalg.norm(scene.means.numpy(), axis=1, keepdims=True)
    assert np.abs((axes * radial).sum(axis=1)).min() > 0.999
    scales = scene.activated_scales().numpy()
    assert np.allclose(scales[:, 2], 0.2 * scales[:, 0], rtol=1e-4)
    assert np.allclose(scene.base_colors().numpy(), 0.7, atol=1e-3)  # no colours -> grey


def test_xyz_points_with_nan_are_dropped(tmp_path):
    path = tmp_path / "pts.xyz"
    path.write_text("0 0 0\n1 0 0\nnan nan nan\n0 1 0\n")
    scene = load(path)
    assert len(scene) == 3 and torch.isfinite(scene.scales).all()


def test_huge_point_cloud_is_voxel_downsampled(tmp_path):
    path = write_cloud(tmp_path / "big.pcd", sphere_points(40_000))
    scene = load_mesh_or_points(path, max_points=4_000)
    assert 1_000 <= len(scene) <= 4_000
    assert np.abs(np.linalg.norm(scene.means.numpy(), axis=1) - 0.5).max() < 0.05


def test_single_point_and_duplicates_get_finite_sizes(tmp_path):
    one = load(write_cloud(tmp_path / "one.pcd", [[1.0, 2.0, 3.0]]))
    assert len(one) == 1 and torch.isfinite(one.scales).all()
    dup = load(write_cloud(tmp_path / "dup.pcd", [[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]]))
    assert torch.isfinite(dup.scales).all() and dup.activated_scales().min() > 0


# ---------------------------------------------------------------------------------------------- bad input
BAD_FILES = {
    "nan.obj": ("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", "NaN/Inf"),
    "comments.obj": ("# nothing here\n", "no triangles and no points"),
    "words.obj": ("hello world\nthis is not a mesh\n", "no triangles and no points"),
    "flat.obj": ("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero area"),
    "truncated.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "truncated or corrupt: the header declares 3 vertices and 1 faces"),
    "allnan.xyz": ("nan nan nan\nnan 0 0\n", "NaN/Inf"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_text_files_get_a_clear_error(tmp_path, name):
    text, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        load(path)
    assert name in str(info.value)


@pytest.mark.parametrize("name", ["junk.stl", "junk.glb", "junk.pcd"])
def test_random_bytes_get_a_clear_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(FormatError, match="no .*points could be read|truncated or corrupt|corrupt") as info:
        load_mesh_or_points(path)
    assert name in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        load_mesh_or_points(tmp_path / "missing.obj")
    (tmp_path / "empty.stl").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        load_mesh_or_points(tmp_path / "empty.stl")


@pytest.mark.parametrize("kwargs", [{"num_samples": 0}, {"num_samples": 10**9}, {"max_points": -5},
                                    {"num_samples": 2.5}])
def test_absurd_counts_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        load_mesh_or_points(write_box(tmp_path / "box.ply"), **kwargs)


def test_convert_command_writes_a_splat_ply(tmp_path, capsys):
    from engine.__main__ import main

    out = tmp_path / "out.ply"
    assert main(["convert", str(write_box(tmp_path / "box.obj")), str(out)]) == 0
    scene = load(out)
    assert len(scene) > 1_000 and np.allclose(scene.base_colors().numpy(), BLUE, atol=2e-3)
