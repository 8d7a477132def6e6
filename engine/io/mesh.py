"""Meshes and point clouds (read through open3d) turned into Gaussians that render as the object right away.

Meshes (.obj, .glb/.gltf, .off, .stl, a .ply with faces): the surface is sampled evenly, about one sample per
cell of a voxel grid sized so the count comes out near the requested one (by default proportional to the
surface area relative to the object's size, capped). Each sample becomes a flat disc in its triangle's plane,
sized from the distance to its neighbours so the discs close into a skin. Colour, in order of preference: the
texture at the sample's UV (open3d's triangle_uvs and textures), the interpolated vertex colours, grey.
Material colours without a texture are not read (open3d's mesh reader does not expose them).

Point clouds (.pcd, .xyz, .xyzn, .xyzrgb, .pts, a .ply without faces): one Gaussian per point (voxel-downsampled beyond `max_points`), coloured by the cloud's colours,
sized from nearest-neighbour distances; isotropic, or flat discs across the normals when the cloud has them.
Points with NaN/Inf coordinates are dropped (sensor clouds mark missing depth that way); a mesh vertex with
NaN/Inf is an error.

Opacity is high (0.95 for mesh samples, 0.9 for points); colour is SH degree 0. Problems with the file raise
FormatError naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..scene import GaussianScene, rgb_to_sh0
from .errors import FormatError
from .files import check_readable
from .mesh_guard import check_mesh_file

POINT_CLOUD_SUFFIXES = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
SAMPLES_PER_DIAGONAL_SQUARED = 50_000  # default mesh samples per (bounding-box diagonal)^2 of surface area
MIN_SAMPLES = 2_000
MAX_SAMPLES = 200_000  # cap on the default mesh sample count
MAX_POINTS = 1_000_000  # point clouds with more points are voxel-downsampled to about this many
LIMIT = 20_000_000  # larger requests are refused as absurd
MESH_OPACITY = 0.95
POINT_OPACITY = 0.90
GREY = 0.7
OVERSAMPLE = 4  # uniform candidates per kept mesh sample
DISC_FLATNESS = 0.2  # thickness of a surface disc relative to its radius
NEIGHBOURS = 6  # the local spacing is the mean distance to this many nearest neighbours
COVER = 0.9  # Gaussian radius (standard deviation) / local spacing: measured to leave no see-through gaps


def load_mesh_or_points(
    path: str | os.PathLike,
    *,
    num_samples: int | None = None,
    max_samples: int = MAX_SAMPLES,
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> GaussianScene:
    """Read a mesh or point cloud with open3d and return it as a float32 degree-0 GaussianScene.

    num_samples: about how many Gaussians to sample on a mesh (default: from the surface area, at most
    `max_samples`); max_points: point clouds with more points are voxel-downsampled to about this many;
    seed: the sampling is deterministic for a given seed.
    """
    for name, value in (("num_samples", num_samples), ("max_samples", max_samples), ("max_points", max_points)):
        if value is not None and not (isinstance(value, (int, np.integer)) and 1 <= value <= LIMIT):
            raise ValueError(f"{name} must be an integer in 1..{LIMIT}, got {value!r}")
    p = check_readable(path)
    check_mesh_file(p)  # before open3d: it would allocate whatever a header declares
    o3d = _open3d(p)
    rng = np.random.default_rng(seed)
    suffix = p.suffix.lower()
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        if suffix in POINT_CLOUD_SUFFIXES:
            return _cloud_scene(p, o3d.io.read_point_cloud(str(p)), max_points, o3d)
        mesh = o3d.io.read_triangle_mesh(str(p), True)  # True: load textures and materials
        if len(mesh.triangles) == 0:
            if suffix == ".ply":  # a point-cloud .ply: read it as one, with its normals and colours
                return _cloud_scene(p, o3d.io.read_point_cloud(str(p)), max_points, o3d)
            if len(mesh.vertices) == 0:
                raise FormatError(
                    p, "no triangles and no points could be read (the file is empty, corrupt, or not a mesh)"
                )
            raise FormatError(
                p, f"{len(mesh.vertices)} vertices but no triangles could be read (truncated or corrupt?); "
                "store point clouds as .ply, .pcd or .xyz"
            )
        return _mesh_scene(p, mesh, num_samples, max_samples, rng)


def _open3d(path: Path):
    try:
        import open3d
    except ModuleNotFoundError:
        raise FormatError(path, "reading meshes and point clouds needs open3d (pip install open3d)") from None
    except (ImportError, OSError) as err:  # installed, but a shared library it needs is missing
        raise FormatError(path, f"open3d is installed but cannot load ({err}); on Debian/Ubuntu "
                          "`apt-get install libusb-1.0-0 libgomp1` provides what it needs") from None
    return open3d


# ---------------------------------------------------------------------------------------------- meshes
def _mesh_scene(
    path: Path, mesh, num_samples: int | None, max_samples: int, rng: np.random.Generator
) -> GaussianScene:
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.int64)
    _check_finite(path, vertices, "vertices")
    if len(vertices) and np.abs(vertices).max() > 1e15:  # beyond this the areas below overflow float64
        raise FormatError(path, f"vertex coordinates up to {np.abs(vertices).max():.3g} are absurdly large")
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise FormatError(path, f"triangles refer to vertices outside 0..{len(vertices) - 1}")
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    cross = np.cross(b - a, c - a)
    double_area = np.linalg.norm(cross, axis=1)
    area = float(double_area.sum()) / 2
    if not area > 0:
        raise FormatError(path, f"all {len(triangles)} triangles have zero area: there is no surface to sample")
    used = vertices[np.unique(triangles)]
    diagonal = float(np.linalg.norm(used.max(axis=0) - used.min(axis=0)))
    if num_samples is None:
        num_samples = int(np.clip(round(SAMPLES_PER_DIAGONAL_SQUARED * area / diagonal**2), MIN_SAMPLES, max_samples))
    face_normals = cross / np.maximum(double_area, 1e-300)[:, None]

    # Uniform candidates over the surface (triangle by area, then uniform barycentrics) ...
    count = OVERSAMPLE * num_samples
    tri = rng.choice(len(triangles), size=count, p=double_area / double_area.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)  # [count, 3]
    points = bary[:, :1] * a[tri] + bary[:, 1:2] * b[tri] + bary[:, 2:] * c[tri]
    # ... thinned to one per voxel cell: even spacing without clumps. A surface of area A crosses about
    # A * E[|nx| + |ny| + |nz|] / h^2 cells of size h, which sets h for the requested count.
    crossing = float((double_area * np.abs(face_normals).sum(axis=1)).sum() / double_area.sum())
    cell = np.sqrt(crossing * area / num_samples)
    keep = _one_per_cell(points, cell)
    points, tri, bary = points[keep], tri[keep], bary[keep]

    colors = _mesh_colors(mesh, tri, bary, len(triangles))
    radius = np.clip(COVER * _neighbour_spacing(points, fallback=cell), 0.5 * cell, 2.0 * cell)
    scales = np.stack([radius, radius, DISC_FLATNESS * radius], axis=1)
    return _scene(points, _normal_quats(face_normals[tri]), scales, colors, MESH_OPACITY)


def _one_per_cell(points: np.ndarray, cell: float) -> np.ndarray:
    """Indices [M] of one point per occupied voxel of size `cell` (the first in the given, random, order)."""
    keys = np.floor((points - points.min(axis=0)) / cell).astype(np.int64)
    dims = keys.max(axis=0) + 1
    flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    _, first = np.unique(flat, return_index=True)
    return np.sort(first)


def _mesh_colors(mesh, tri: np.ndarray, bary: np.ndarray, num_triangles: int) -> np.ndarray:
    """[M, 3] colours in [0, 1] at the samples: texture, else vertex colours, else grey."""
    colors = np.full((len(tri), 3), np.nan)
    if mesh.has_vertex_colors():
        vc = np.asarray(mesh.vertex_colors, dtype=np.float64)
        corners = np.asarray(mesh.triangles, dtype=np.int64)[tri]  # [M, 3]
        colors = np.einsum("mk,mkc->mc", bary, vc[corners])
    uvs = np.asarray(mesh.triangle_uvs, dtype=np.float64)
    if mesh.has_textures() and len(uvs) == 3 * num_triangles:
        uv = np.einsum("mk,mkc->mc", bary, uvs.reshape(-1, 3, 2)[tri])
        material = np.asarray(mesh.triangle_material_ids, dtype=np.int64)
        material = material[tri] if len(material) == num_triangles else np.zeros(len(tri), dtype=np.int64)
        for k, texture in enumerate(mesh.textures):
            image = _texture_array(texture)
            sel = material == k
            if image is not None and sel.any():
                colors[sel] = _sample_bilinear(image, uv[sel])
    colors = np.where(np.isfinite(colors), colors, GREY)
    return np.clip(colors, 0.0, 1.0)


def _texture_array(texture) -> np.ndarray | None:
    """An open3d texture as float [H, W, 3] in [0, 1] (None when empty)."""
    image = np.asarray(texture)
    if image.size == 0:
        return None
    if image.dtype == np.uint8:
        image = image / 255.0
    elif image.dtype == np.uint16:
        image = image / 65535.0
    image = image.astype(np.float64)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def _sample_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup [M, 3]. open3d hands textures over with row 0 at v = 0 (it flips the image on
    load), so pixel coordinates are simply (u * W, v * H). UVs outside [0, 1] repeat; the image border is
    clamped (no bleeding from the opposite edge)."""
    h, w = image.shape[:2]
    uv = np.where((uv < 0) | (uv > 1), uv - np.floor(uv), uv)
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip(uv[:, 1] * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


# ---------------------------------------------------------------------------------------------- point clouds
def _cloud_scene(path: Path, cloud, max_points: int, o3d) -> GaussianScene:
    points = np.asarray(cloud.points, dtype=np.float64)
    if len(points) == 0:
        raise FormatError(path, "no points could be read (the file is empty, corrupt, or not a point cloud)")
    finite = np.isfinite(points).all(axis=1)
    if not finite.any():
        raise FormatError(path, f"all {len(points)} points have NaN/Inf coordinates")
    if not finite.all():
        cloud = cloud.select_by_index(np.flatnonzero(finite).tolist())
    if len(cloud.points) > max_points:
        cloud = _downsample(cloud, max_points)
    points = np.asarray(cloud.points, dtype=np.float64)
    colors = np.asarray(cloud.colors, dtype=np.float64) if cloud.has_colors() else np.full((len(points), 3), GREY)
    diagonal = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    radius = COVER * _neighbour_spacing(points, fallback=0.01 * diagonal if diagonal > 0 else 0.01)
    if cloud.has_normals():
        normals = np.asarray(cloud.normals, dtype=np.float64)
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        good = np.isfinite(length[:, 0]) & (length[:, 0] > 1e-12)
        normals = np.where(good[:, None], normals / np.where(good[:, None], length, 1.0), (0.0, 0.0, 1.0))
        thin = np.where(good, DISC_FLATNESS, 1.0) * radius
        scales = np.stack([radius, radius, thin], axis=1)
        quats = _normal_quats(normals)
    else:
        scales = np.repeat(radius[:, None], 3, axis=1)
        quats = np.tile([1.0, 0.0, 0.0, 0.0], (len(points), 1))
    return _scene(points, quats, scales, np.clip(colors, 0.0, 1.0), POINT_OPACITY)


def _downsample(cloud, max_points: int):
    """Voxel-downsample until at most `max_points` remain (voxel size grown geometrically)."""
    points = np.asarray(cloud.points)
    extent = points.max(axis=0) - points.min(axis=0)
    # start from the spacing a uniform volume would have; surfaces need larger voxels, hence the growth
    voxel = max(float(np.prod(np.maximum(extent, 1e-9)) / max_points) ** (1 / 3), 1e-9)
    while True:
        smaller = cloud.voxel_down_sample(voxel)
        if len(smaller.points) <= max_points:
            return smaller
        voxel *= 1.25


# ---------------------------------------------------------------------------------------------- shared
def _check_finite(path: Path, values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise FormatError(
            path, f"{int(bad.sum())} of {len(values)} {what} have NaN/Inf coordinates (first at index "
            f"{int(np.flatnonzero(bad)[0])})"
        )


def _neighbour_spacing(points: np.ndarray, fallback: float) -> np.ndarray:
    """[M] mean distance to the (up to) NEIGHBOURS nearest other points; `fallback` when there are none or
    they coincide."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return np.full(len(points), fallback)
    k = min(NEIGHBOURS, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1, workers=-1)
    spacing = dist[:, 1:].mean(axis=1)
    positive = spacing[spacing > 0]
    floor = 0.1 * float(np.median(positive)) if len(positive) else fallback
    return np.maximum(spacing, floor)


def _normal_quats(normals: np.ndarray) -> np.ndarray:
    """[M, 4] (w, x, y, z): the shortest rotation taking +z (a disc's thin axis) to each unit normal."""
    nx, ny, nz = normals.T
    q = np.stack([1.0 + nz, -ny, nx, np.zeros_like(nz)], axis=1)
    q[nz < -1.0 + 1e-9] = (0.0, 1.0, 0.0, 0.0)  # +z -> -z: a half turn about x
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _scene(points, quats, scales, colors, opacity: float) -> GaussianScene:
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    n = len(points)
    return GaussianScene.create(
        means=f32(points),
        quats=f32(quats),
        scales=f32(np.log(scales)),
        opacities=torch.full((n,), float(np.log(opacity / (1 - opacity)))),
        sh0=rgb_to_sh0(f32(colors)),
    )
