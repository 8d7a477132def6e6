"""Scene files in and out: `load(path)`, `save(scene, path)`, `detect_format(path)`.

Readable: 3DGS .ply (INRIA layout), SuperSplat .compressed.ply, antimatter15 .splat, Niantic .spz, PlayCanvas
SOG (.sog bundle, or an unbundled SOG's meta.json), mkkellogg .ksplat, KHR_gaussian_splatting .glb/.gltf,
and (via engine.io.mesh, open3d) meshes
.obj/.glb/.gltf/.off/.stl/mesh .ply and point clouds .ply/.pcd/.xyz.
Writable: .ply (3DGS), .compressed.ply, .splat, .spz, .sog and unbundled SOG (a path ending in .json).
The format is chosen by extension; a .ply is told apart by its header. Every problem with a file raises
FormatError (a ValueError) whose message names the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..scene import GaussianScene
from .errors import FormatError
from .files import atomic_write, check_readable
from .memory_budget import check_fits

__all__ = ["FormatError", "load", "save", "detect_format", "check_writable", "READABLE_EXTENSIONS",
           "WRITABLE_EXTENSIONS", "SPZ_FRAMES", "DEFAULT_SPZ_FRAME"]  # fmt: skip

MESH_EXTENSIONS = (".obj", ".glb", ".gltf", ".off", ".stl")
POINT_CLOUD_EXTENSIONS = (".pcd", ".xyz")
READABLE_EXTENSIONS = (".ply", ".compressed.ply", ".splat", ".spz", ".sog", ".json", ".ksplat")  # .json: SOG meta
READABLE_EXTENSIONS += MESH_EXTENSIONS + POINT_CLOUD_EXTENSIONS
WRITABLE_EXTENSIONS = (".ply", ".compressed.ply", ".splat", ".spz", ".sog", ".json")
DEFAULT_SPZ_FRAME = "raw"  # what SuperSplat / splat-transform read and write: see engine/io/spz.py and the README
# .spz coordinate frame: "raw" keeps the stored values in the .ply frame (SuperSplat, splat-transform, Niantic's
# ply-to-spz tool); "spec" converts from/to the RUB frame the spz README names (the reference library given a
# frame). Nothing in an .spz file says which one wrote it.
SPZ_FRAMES = ("spec", "raw")

# Format names returned by detect_format (also shown by `python -m engine info`).
PLY = "ply"  # 3DGS .ply, INRIA layout
COMPRESSED_PLY = "compressed_ply"  # SuperSplat / PlayCanvas
SPLAT = "splat"  # antimatter15
SPZ = "spz"  # Niantic
SOG = "sog"  # PlayCanvas, bundled or unbundled
KSPLAT = "ksplat"  # mkkellogg GaussianSplats3D
GLTF_SPLAT = "gltf_splat"  # KHR_gaussian_splatting .glb / .gltf (splat-transform)
MESH = "mesh"  # sampled into Gaussians by engine.io.mesh
POINT_CLOUD = "point_cloud"  # one Gaussian per point, by engine.io.mesh


def detect_format(path: str | os.PathLike) -> str:
    """The format of the file at `path` (one of the names above); FormatError if unreadable or unknown."""
    p = check_readable(path)
    name = p.name.lower()
    if name.endswith(".ply"):
        from . import compressed_ply, ply
        from .ply_header import read_ply_header

        header = read_ply_header(p)
        if compressed_ply.is_compressed_ply(header):
            return COMPRESSED_PLY
        if ply.is_gaussian_ply(header):
            return PLY
        vertex = header.element("vertex")
        if vertex is not None and vertex.has("x", "y", "z"):
            face = header.element("face")
            return MESH if face is not None and face.count > 0 else POINT_CLOUD
        raise FormatError(
            p,
            "unrecognised .ply: no 3DGS properties (f_dc_*, opacity, scale_*, rot_*), no SuperSplat "
            "chunk/packed_* elements, and no x/y/z vertices",
        )
    if name.endswith(".splat"):
        return SPLAT
    if name.endswith(".spz"):
        return SPZ
    if name.endswith((".sog", ".json")):
        return SOG
    if name.endswith(".ksplat"):
        return KSPLAT
    if name.endswith((".glb", ".gltf")):
        from .gltf_splat import is_gaussian_gltf

        if is_gaussian_gltf(p):
            return GLTF_SPLAT
    if name.endswith(MESH_EXTENSIONS):
        return MESH
    if name.endswith(POINT_CLOUD_EXTENSIONS):
        return POINT_CLOUD
    raise FormatError(
        p, f"unknown file extension '{p.suffix or p.name}' (readable: {', '.join(READABLE_EXTENSIONS)})"
    )


def load(path: str | os.PathLike, *, spz_frame: str = DEFAULT_SPZ_FRAME, notes: dict | None = None) -> GaussianScene:
    """Read a scene file of any readable format into a float32 CPU GaussianScene (FormatError, before reading
    the body, when the scene it declares would not fit in the memory available: engine/io/memory_budget.py).

    spz_frame: "spec" or "raw", how an .spz is read (see SPZ_FRAMES); notes: a dict the reader fills with
    what it changed on the way in (e.g. "clamped_infinite_opacities": how many +/-Inf opacity logits of a
    .ply became finite).
    """
    _check_spz_frame(spz_frame)
    p = Path(path)
    fmt = detect_format(p)
    check_fits(p, fmt)  # a scene that would not fit in memory is refused before its body is read
    if fmt == PLY:
        from .ply import read_gaussian_ply

        return read_gaussian_ply(p, notes=notes)
    if fmt == COMPRESSED_PLY:
        from .compressed_ply import read_compressed_ply

        return read_compressed_ply(p)
    if fmt == SPLAT:
        from .splat import read_splat

        return read_splat(p)
    if fmt == SPZ:
        from .spz import read_spz

        return read_spz(p, convert_frame=spz_frame == "spec")
    if fmt == SOG:
        from .sog import read_sog

        return read_sog(p)
    if fmt == KSPLAT:
        from .ksplat import read_ksplat

        return read_ksplat(p)
    if fmt == GLTF_SPLAT:
        from .gltf_splat import read_gltf_splat

        return read_gltf_splat(p)
    try:
        from .mesh import load_mesh_or_points

        return load_mesh_or_points(p)
    except ImportError as exc:  # engine/io/mesh.py or open3d missing from this installation
        raise FormatError(p, f"mesh / point-cloud import is not available here ({exc})") from None


def _check_spz_frame(spz_frame: str) -> None:
    if spz_frame not in SPZ_FRAMES:
        raise ValueError(f"spz_frame must be one of {', '.join(SPZ_FRAMES)}, got {spz_frame!r}")


def check_writable(path: str | os.PathLike) -> str:
    """The output format for `path` ("ply", "compressed_ply", "splat", "spz", "sog"), checked before any
    work is done (extension and folder); FormatError otherwise."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".compressed.ply"):
        fmt = COMPRESSED_PLY
    elif name.endswith(".ply"):
        fmt = PLY
    elif name.endswith(".splat"):
        fmt = SPLAT
    elif name.endswith(".spz"):
        fmt = SPZ
    elif name.endswith((".sog", ".json")):
        fmt = SOG
    else:
        raise FormatError(
            p, f"cannot write '{p.suffix or p.name}' files (writable: {', '.join(WRITABLE_EXTENSIONS)}; "
            ".json writes an unbundled SOG)"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FormatError(p, f"cannot write: folder '{parent}' does not exist")
    if p.is_dir():
        raise FormatError(p, "cannot write: a directory exists at this path")
    return fmt


def save(
    scene: GaussianScene, path: str | os.PathLike, *, spz_version: int | None = None, spz_frame: str = DEFAULT_SPZ_FRAME
) -> None:
    """Write `scene` in the format named by the extension of `path`, atomically.

    The file appears complete or not at all: it is written to a temporary file in the same folder and renamed
    (an unbundled SOG writes its images first, then meta.json). `.splat` keeps only the degree-0 colour;
    `.spz`, `.sog` and `.compressed.ply` quantize (see their modules); `spz_version` picks the .spz version to
    write (2, 3 or 4; default engine.io.spz.DEFAULT_VERSION) and `spz_frame` its frame (SPZ_FRAMES).
    """
    if not isinstance(scene, GaussianScene):
        raise TypeError(f"save() needs a GaussianScene, got {type(scene).__name__}")
    _check_spz_frame(spz_frame)
    p = Path(path)
    fmt = check_writable(p)
    if spz_version is not None and fmt != SPZ:
        raise FormatError(p, "spz_version only applies to .spz output")
    if fmt == COMPRESSED_PLY:
        from .compressed_ply import write_compressed_ply as writer
    elif fmt == PLY:
        from .ply import write_gaussian_ply as writer
    elif fmt == SPLAT:
        from .splat import write_splat as writer
    elif fmt == SPZ:
        from .spz import DEFAULT_VERSION, write_spz

        version = DEFAULT_VERSION if spz_version is None else spz_version

        def writer(s, target):
            write_spz(s, target, version=version, convert_frame=spz_frame == "spec")

    else:
        from .sog import write_sog

        bundled = not p.name.lower().endswith(".json")

        def writer(s, target):
            write_sog(s, target, bundled=bundled)

    try:
        with atomic_write(p) as tmp:
            writer(scene, tmp)
    except FormatError as exc:  # writers only see the temporary path: report the real one
        if exc.path == os.fspath(p):
            raise
        raise FormatError(p, exc.problem) from None
