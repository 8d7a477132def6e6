"""Test helpers: write arbitrary (also malformed) PLY files from structured numpy arrays.

Independent of engine.io's writers so that reader tests do not just check one codec against itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TYPE_NAMES = {"f4": "float", "f8": "double", "u1": "uchar", "i1": "char", "u2": "ushort", "i2": "short",
              "u4": "uint", "i4": "int"}  # fmt: skip


def header_text(elements: list[tuple[str, np.ndarray]], fmt: str = "binary_little_endian", counts=None) -> str:
    lines = ["ply", f"format {fmt} 1.0", "comment written by tests"]
    for i, (name, rows) in enumerate(elements):
        count = len(rows) if counts is None else counts[i]
        lines.append(f"element {name} {count}")
        for field in rows.dtype.names:
            lines.append(f"property {TYPE_NAMES[rows.dtype[field].str[1:]]} {field}")
    lines.append("end_header")
    return "\n".join(lines) + "\n"


def write_ply(
    path: Path,
    elements: list[tuple[str, np.ndarray]],
    fmt: str = "binary_little_endian",
    counts: list[int] | None = None,
    truncate: int = 0,
) -> Path:
    """Write elements (name, structured rows) as a PLY; `counts` overrides the declared counts,
    `truncate` drops that many bytes from the end of the body."""
    header = header_text(elements, fmt, counts).encode("ascii")
    if fmt == "ascii":
        body = b"".join(
            b"".join((" ".join(repr(v.item()) for v in row) + "\n").encode() for row in rows) for _, rows in elements
        )
    else:
        order = ">" if fmt == "binary_big_endian" else "<"
        body = b"".join(rows.astype(rows.dtype.newbyteorder(order)).tobytes() for _, rows in elements)
    if truncate:
        body = body[:-truncate]
    path.write_bytes(header + body)
    return path


def gaussian_rows(scene, names: list[str] | None = None, dtype: str = "f4") -> np.ndarray:
    """A 3DGS vertex array in INRIA layout (f_rest channel-major) computed from a scene, independently
    of engine.io.ply; `names` reorders / subsets the properties."""
    n, k1 = len(scene), scene.shN.shape[1]
    values = {}
    for i, axis in enumerate("xyz"):
        values[axis] = scene.means[:, i].numpy()
        values["n" + axis] = np.zeros(n, np.float32)
    for c in range(3):
        values[f"f_dc_{c}"] = scene.sh0[:, 0, c].numpy()
        for k in range(k1):
            values[f"f_rest_{c * k1 + k}"] = scene.shN[:, k, c].numpy()
    values["opacity"] = scene.opacities.numpy()
    for i in range(3):
        values[f"scale_{i}"] = scene.scales[:, i].numpy()
    for i in range(4):
        values[f"rot_{i}"] = scene.quats[:, i].numpy()
    if names is None:
        names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                 + [f"f_rest_{i}" for i in range(3 * k1)]
                 + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])  # fmt: skip
    rows = np.zeros(n, dtype=[(name, dtype) for name in names])
    for name in names:
        rows[name] = values[name]
    return rows
