"""3D Gaussian Splatting .ply in the INRIA layout: read (binary either endian, ascii) and write (binary LE).

Layout, one `vertex` row per Gaussian, all float32:

    x y z  nx ny nz  f_dc_0..2  f_rest_0..f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

f_rest is *channel-major* in the file (all red coefficients, then green, then blue); our shN [N, K-1, 3] is
coefficient-major, so rows are transposed on the way in and out. rot_* is (w, x, y, z), scale_* are
log-scales and opacity is a logit -- the same raw parameters GaussianScene stores, so a round trip is
bit-exact for float32 scenes. Extra properties (normals, labels, ...) are ignored on read.

Binary bodies are read in blocks with `readinto` straight from the file into one reusable buffer, and each
block is gathered into the final arrays (one np.take per parameter for the usual all-float32 layout,
property by property otherwise), so peak memory is the output tensors plus one 8 MB block (bench/io.py:
~0.96x the file size for a 1.5 GB file) and speed is close to the disk's. Ascii bodies go through plyfile
(they are small in practice).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import torch

from ..scene import GaussianScene, SceneError
from .errors import FormatError
from .ply_header import PlyElement, PlyHeader, read_ply_header

BLOCK_BYTES = 8 << 20  # rows are read and converted this many bytes at a time (fits in cache)
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip
# Any of these in the vertex element marks a .ply as a 3DGS file (then the others are required).
SIGNATURE = ("f_dc_0", "opacity", "scale_0", "rot_0")
F_REST_COUNTS = {0: 0, 9: 1, 24: 2, 45: 3}  # number of f_rest_* properties -> SH degree
_F_REST = re.compile(r"f_rest_(\d+)$")
OPACITY_LOGIT_LIMIT = float(np.log((1 - 1e-6) / 1e-6))  # logit of opacity 1 - 1e-6 (13.8): where +/-Inf land


def property_names(sh_degree: int) -> list[str]:
    """The INRIA vertex property names, in file order, for a given SH degree."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(rest)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def is_gaussian_ply(header: PlyHeader) -> bool:
    """True when the vertex element carries 3DGS properties (the reader then checks the full layout)."""
    vertex = header.element("vertex")
    return vertex is not None and any(name in vertex.property_names for name in SIGNATURE)


def read_gaussian_ply(
    path: str | os.PathLike, header: PlyHeader | None = None, notes: dict | None = None
) -> GaussianScene:
    """Load a 3DGS .ply (INRIA layout) as a float32 CPU scene; FormatError on any malformed content.

    +Inf / -Inf opacity logits (what splat-transform writes for fully opaque / transparent splats) become
    +/-OPACITY_LOGIT_LIMIT; their number goes to `notes["clamped_infinite_opacities"]` when `notes` is given.
    NaN anywhere and non-finite positions, scales, rotations or colours are still errors.
    """
    path = Path(path)
    header = header or read_ply_header(path)
    vertex = header.element("vertex")
    if vertex is None:
        raise FormatError(path, "no 'vertex' element in the PLY header (not a 3DGS .ply)")
    num_rest = _check_layout(path, vertex)
    if header.is_binary:
        columns = _read_binary(path, header, vertex, num_rest)
    else:
        columns = _read_ascii(path, header, vertex, num_rest)
    clamped = clamp_infinite_opacities(columns["opacities"])
    if notes is not None:
        notes["clamped_infinite_opacities"] = clamped
    return _to_scene(path, columns)


def clamp_infinite_opacities(logits: np.ndarray) -> int:
    """Replace +/-Inf logits in place by +/-OPACITY_LOGIT_LIMIT (opacity 1 / 0 to 1e-6); return how many."""
    infinite = np.isinf(logits)
    count = int(infinite.sum())
    if count:
        logits[infinite] = np.copysign(OPACITY_LOGIT_LIMIT, logits[infinite])
    return count


def write_gaussian_ply(scene: GaussianScene, path: str | os.PathLike, *, comments: tuple[str, ...] = ()) -> None:
    """Write `scene` as a binary little-endian INRIA .ply (float32, zero normals) that other viewers open.

    A float64 scene is rounded to float32 (the format's type). `comments` become `comment ...` header lines
    (engine.io.detect_up.save_with_up records the up axis there). Writes straight to `path`; callers wanting
    atomicity use engine.io.save.
    """
    scene = scene.detach().to("cpu")
    n, degree = len(scene), scene.sh_degree
    names = property_names(degree)
    if any("\n" in c or "\r" in c or not c.isascii() for c in comments):
        raise ValueError("PLY header comments must be single-line ASCII")
    lines = ["ply", "format binary_little_endian 1.0", *(f"comment {c}" for c in comments), f"element vertex {n}"]
    lines += [f"property float {name}" for name in names]
    lines += ["end_header"]
    header = ("\n".join(lines) + "\n").encode("ascii")

    means = scene.means.float().numpy()
    quats = scene.quats.float().numpy()
    scales = scene.scales.float().numpy()
    opacities = scene.opacities.float().numpy()
    sh0 = scene.sh0.float().numpy()[:, 0, :]
    shN = scene.shN.float().numpy()  # [N, K-1, 3]
    rest = 3 * shN.shape[1]
    width = len(names)
    rows_per_block = max(1, BLOCK_BYTES // (4 * width))
    with open(path, "wb") as f:
        f.write(header)
        for start in range(0, n, rows_per_block):
            end = min(n, start + rows_per_block)
            block = np.zeros((end - start, width), dtype="<f4")
            block[:, 0:3] = means[start:end]
            block[:, 6:9] = sh0[start:end]
            block[:, 9 : 9 + rest] = shN[start:end].transpose(0, 2, 1).reshape(end - start, rest)
            o = 9 + rest
            block[:, o] = opacities[start:end]
            block[:, o + 1 : o + 4] = scales[start:end]
            block[:, o + 4 : o + 8] = quats[start:end]
            f.write(block.tobytes())


# ---------------------------------------------------------------------------------------------- reading


def _check_layout(path: Path, vertex: PlyElement) -> int:
    """Validate the vertex properties; return the number of f_rest_* properties (0, 9, 24 or 45)."""
    names = vertex.property_names
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise FormatError(
            path, f"3DGS .ply is missing required vertex properties: {', '.join(missing)}"
        )
    lists = [p.name for p in vertex.properties if p.is_list and (p.name in REQUIRED or _F_REST.match(p.name))]
    if lists:
        raise FormatError(path, f"vertex properties {', '.join(lists)} are lists, expected scalars")
    rest = sorted(int(m.group(1)) for name in names if (m := _F_REST.match(name)))
    if rest != list(range(len(rest))):
        raise FormatError(path, f"f_rest_* properties are not numbered 0..{len(rest) - 1} without gaps")
    if len(rest) not in F_REST_COUNTS:
        raise FormatError(
            path,
            f"unsupported property layout: {len(rest)} f_rest_* properties "
            "(expected 0, 9, 24 or 45 for SH degree 0-3)",
        )
    return len(rest)


def _empty_columns(n: int, num_rest: int) -> dict[str, np.ndarray]:
    k1 = num_rest // 3
    return {
        "means": np.empty((n, 3), np.float32),
        "quats": np.empty((n, 4), np.float32),
        "scales": np.empty((n, 3), np.float32),
        "opacities": np.empty((n,), np.float32),
        "sh0": np.empty((n, 1, 3), np.float32),
        "shN": np.empty((n, k1, 3), np.float32),
    }


def _fill(columns: dict[str, np.ndarray], rows: np.ndarray, start: int, num_rest: int) -> None:
    """Copy structured `rows` into the output columns at [start, start+len(rows)) (casting to float32)."""
    end = start + len(rows)
    for i, name in enumerate(("x", "y", "z")):
        columns["means"][start:end, i] = rows[name]
    for i in range(4):
        columns["quats"][start:end, i] = rows[f"rot_{i}"]
    for i in range(3):
        columns["scales"][start:end, i] = rows[f"scale_{i}"]
        columns["sh0"][start:end, 0, i] = rows[f"f_dc_{i}"]
    columns["opacities"][start:end] = rows["opacity"]
    k1 = num_rest // 3
    shN = columns["shN"]
    for c in range(3):  # file: channel-major (c * k1 + k); ours: [k, c]
        for k in range(k1):
            shN[start:end, k, c] = rows[f"f_rest_{c * k1 + k}"]


def _fill_float32(columns: dict[str, np.ndarray], block: np.ndarray, names: tuple[str, ...], start: int) -> None:
    """Fast path of _fill for all-float32 native-order rows: `block` is [rows, P]; one gather per parameter
    straight into the output (np.take with `out`, no temporaries)."""
    col = {name: i for i, name in enumerate(names)}
    end = start + len(block)
    k1 = columns["shN"].shape[1]
    gathers = {
        "means": [col["x"], col["y"], col["z"]],
        "quats": [col[f"rot_{i}"] for i in range(4)],
        "scales": [col[f"scale_{i}"] for i in range(3)],
        "opacities": col["opacity"],
        "sh0": [[col[f"f_dc_{i}"] for i in range(3)]],
        "shN": [[col[f"f_rest_{c * k1 + k}"] for c in range(3)] for k in range(k1)],
    }
    for name, index in gathers.items():
        if columns[name].size:
            np.take(block, np.asarray(index), axis=1, out=columns[name][start:end], mode="clip")


def _read_binary(path: Path, header: PlyHeader, vertex: PlyElement, num_rest: int) -> dict[str, np.ndarray]:
    if not vertex.is_fixed_size:
        raise FormatError(path, "vertex element has list properties; a 3DGS .ply has only scalar properties")
    offset = header.check_binary_size("vertex")
    dtype = vertex.row_dtype(header.byteorder)
    n = vertex.count
    columns = _empty_columns(n, num_rest)
    rows_per_block = max(1, min(n, BLOCK_BYTES // dtype.itemsize))
    buffer = np.empty(rows_per_block * dtype.itemsize, np.uint8)
    native = (header.byteorder == "<") == (sys.byteorder == "little")
    all_float32 = native and all(p.type == "f4" for p in vertex.properties)
    with open(path, "rb") as f:
        f.seek(offset)
        for start in range(0, n, rows_per_block):
            count = min(rows_per_block, n - start)
            view = buffer[: count * dtype.itemsize]
            got = f.readinto(memoryview(view))
            if got != view.nbytes:
                raise FormatError(path, f"truncated: the file ended inside vertex row {start + got // dtype.itemsize}")
            if all_float32:
                _fill_float32(columns, view.view(np.float32).reshape(count, -1), vertex.property_names, start)
            else:
                _fill(columns, view.view(dtype), start, num_rest)
    return columns


def _read_ascii(path: Path, header: PlyHeader, vertex: PlyElement, num_rest: int) -> dict[str, np.ndarray]:
    import plyfile

    # Each ascii value takes at least 2 bytes (a digit and a separator): reject absurd counts up front
    # instead of letting the parser allocate them.
    body = header.file_size - header.header_size
    need = sum(e.count * 2 * len(e.properties) for e in header.elements)
    if need > body:
        raise FormatError(
            path,
            f"truncated: the header declares {vertex.count} vertices but the ascii body has only {body} bytes",
        )
    try:
        data = plyfile.PlyData.read(str(path))
        rows = data["vertex"].data
    except (plyfile.PlyParseError, ValueError, KeyError, IndexError, EOFError) as exc:
        message = " ".join(str(exc).split())
        raise FormatError(path, f"malformed ascii PLY body: {message}") from None
    if len(rows) != vertex.count:
        raise FormatError(path, f"ascii body has {len(rows)} vertex rows, header declares {vertex.count}")
    columns = _empty_columns(len(rows), num_rest)
    _fill(columns, rows, 0, num_rest)
    return columns


def _to_scene(path: Path, columns: dict[str, np.ndarray]) -> GaussianScene:
    tensors = {name: torch.from_numpy(array) for name, array in columns.items()}
    try:
        return GaussianScene(**tensors)
    except SceneError as exc:
        raise FormatError(path, f"invalid Gaussian values: {exc}") from None
