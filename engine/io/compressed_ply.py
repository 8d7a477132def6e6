"""SuperSplat / PlayCanvas compressed .ply: read and write (SuperSplat's own exchange format).

Layout (binary PLY, little-endian):

    element chunk  ceil(N/256)  float min_x min_y min_z max_x max_y max_z
                                      min_scale_x.. max_scale_x..   (log-scale bounds)
                                      [min_r min_g min_b max_r max_g max_b]   (optional colour bounds)
    element vertex N            uint packed_position packed_rotation packed_scale packed_color
    element sh     N            uchar f_rest_0 .. f_rest_{9,24,45 - 1}   (optional, channel-major)

Gaussian i belongs to chunk i // 256. Bit layouts (as decoded by PlayCanvas splat-transform and written by
SuperSplat and gsplat's exporter):

    packed_position / packed_scale   x: bits 21-31 (11), y: bits 11-20 (10), z: bits 0-10 (11), each an
                                     unsigned fraction v / (2^bits - 1) lerped between the chunk min and max
    packed_rotation                  bits 30-31: index of the largest quaternion component (w,x,y,z order);
                                     bits 20-29, 10-19, 0-9: the other three in order, each
                                     (v / 1023 - 0.5) * sqrt(2); the largest is sqrt(1 - sum of squares)
    packed_color                     r: bits 24-31, g: 16-23, b: 8-15, opacity: 0-7, each v / 255; rgb is
                                     lerped with the chunk colour bounds when present; f_dc = (rgb - 0.5) / C0;
                                     opacity is a logit of the fraction (clamped off 0 and 1, see below)
    sh f_rest_j (uchar)              0 -> -4, 255 -> +4, else ((v + 0.5) / 256 - 0.5) * 8

Opacity bytes 0 and 255 would be logits of -inf/+inf; we clamp the fraction to [0.25/255, 254.75/255] so the
scene stays finite while a re-quantization gives back the same byte.

The writer sorts the Gaussians in Morton order (so each chunk of 256 is spatially compact, as SuperSplat
does), stores per-chunk position, log-scale and colour bounds, and the SH element when the scene has SH.
What a round trip costs, per chunk: positions 1/2047 (x, z) or 1/1023 (y) of the chunk's extent, log-scales
the same fractions of the chunk's log-scale range, base colour 1/255 of the chunk's colour range (half of
that after rounding), opacity 0.5/255 in sigmoid space, rotations about 0.0014 per component, SH 4/256 inside
[-4, 4] (clamped outside).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..scene import SH_C0, GaussianScene, SceneError
from .errors import FormatError
from .morton import morton_order
from .ply_header import PlyHeader, read_ply_header

CHUNK_SIZE = 256
CHUNK_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z")  # fmt: skip
CHUNK_COLOR_BOUNDS = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
ALPHA_CLAMP = (0.25 / 255.0, 254.75 / 255.0)
WRITE_BLOCK = 256 * CHUNK_SIZE  # Gaussians encoded at a time (whole chunks)


def is_compressed_ply(header: PlyHeader) -> bool:
    """True when the header has a `chunk` element and packed vertex properties (the reader checks the rest)."""
    vertex = header.element("vertex")
    return header.element("chunk") is not None and vertex is not None and "packed_position" in vertex.property_names


def read_compressed_ply(path: str | os.PathLike, header: PlyHeader | None = None) -> GaussianScene:
    """Decode a SuperSplat compressed .ply into a float32 CPU scene; FormatError on malformed content."""
    path = Path(path)
    header = header or read_ply_header(path)
    if not header.is_binary:
        raise FormatError(path, "compressed .ply must be binary (found ascii)")
    chunk_el, vertex_el, sh_el = header.element("chunk"), header.element("vertex"), header.element("sh")
    if chunk_el is None or vertex_el is None:
        raise FormatError(path, "compressed .ply needs both a 'chunk' and a 'vertex' element")
    missing = [n for n in CHUNK_BOUNDS if n not in chunk_el.property_names]
    missing += [n for n in PACKED if n not in vertex_el.property_names]
    if missing:
        raise FormatError(path, f"compressed .ply is missing properties: {', '.join(missing)}")
    color_bounds = [n for n in CHUNK_COLOR_BOUNDS if n in chunk_el.property_names]
    if color_bounds and len(color_bounds) != len(CHUNK_COLOR_BOUNDS):
        raise FormatError(path, "chunk colour bounds are incomplete (need all of min_r..max_b or none)")
    not_uint32 = [p.name for p in vertex_el.properties if p.name in PACKED and p.type not in ("u4", "i4")]
    if not_uint32:
        raise FormatError(path, f"packed properties must be 32-bit integers: {', '.join(not_uint32)}")
    n = vertex_el.count
    expected_chunks = math.ceil(n / CHUNK_SIZE)
    if chunk_el.count != expected_chunks:
        raise FormatError(
            path,
            f"{n} vertices need {expected_chunks} chunk(s) of {CHUNK_SIZE}, but the file has {chunk_el.count}",
        )
    num_rest = 0
    if sh_el is not None:
        names = sh_el.property_names
        num_rest = len(names)
        if num_rest not in (9, 24, 45) or sorted(names) != sorted(f"f_rest_{i}" for i in range(num_rest)):
            raise FormatError(
                path, f"unsupported 'sh' element: {num_rest} properties (expected f_rest_0.. with 9, 24 or 45)"
            )
        if sh_el.count != n:
            raise FormatError(path, f"'sh' element has {sh_el.count} rows, 'vertex' has {n}")

    chunks = _read_element(path, header, "chunk")
    vertices = _read_element(path, header, "vertex")
    shs = _read_element(path, header, "sh") if sh_el is not None else None

    ci = np.arange(n) // CHUNK_SIZE

    def bound(name: str) -> np.ndarray:  # per-Gaussian value of a chunk property, float64
        return chunks[name].astype(np.float64)[ci]

    def lerp(lo: str, hi: str, t: np.ndarray) -> np.ndarray:
        a, b = bound(lo), bound(hi)
        return a * (1.0 - t) + b * t

    pos = _unpack_111011(vertices["packed_position"])
    means = np.stack([lerp(f"min_{a}", f"max_{a}", pos[i]) for i, a in enumerate("xyz")], axis=1)
    scl = _unpack_111011(vertices["packed_scale"])
    scales = np.stack([lerp(f"min_scale_{a}", f"max_scale_{a}", scl[i]) for i, a in enumerate("xyz")], axis=1)
    quats = unpack_rotation(vertices["packed_rotation"])
    rgba = _unpack_8888(vertices["packed_color"])
    rgb = [lerp(f"min_{c}", f"max_{c}", rgba[i]) if color_bounds else rgba[i] for i, c in enumerate("rgb")]
    sh0 = (np.stack(rgb, axis=1) - 0.5) / SH_C0
    alpha = np.clip(rgba[3], *ALPHA_CLAMP)
    opacities = np.log(alpha) - np.log1p(-alpha)
    k1 = num_rest // 3
    shN = np.zeros((n, k1, 3), np.float32)
    if shs is not None:
        for c in range(3):
            for k in range(k1):
                shN[:, k, c] = dequantize_sh(shs[f"f_rest_{c * k1 + k}"])

    tensors = dict(
        means=means, quats=quats, scales=scales, opacities=opacities, sh0=sh0[:, None, :], shN=shN
    )
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in tensors.items()}
    try:
        return GaussianScene(**tensors)
    except SceneError as exc:
        raise FormatError(path, f"invalid Gaussian values: {exc}") from None


def unpack_rotation(packed: np.ndarray) -> np.ndarray:
    """packed_rotation uint32 [N] -> unit quaternions [N, 4] (w, x, y, z), float64."""
    v = packed.astype(np.uint32)
    norm = math.sqrt(2.0)
    a = ((v >> 20) & 0x3FF) / 1023.0
    b = ((v >> 10) & 0x3FF) / 1023.0
    c = (v & 0x3FF) / 1023.0
    small = (np.stack([a, b, c], axis=1) - 0.5) * norm
    largest = np.sqrt(np.maximum(0.0, 1.0 - (small**2).sum(axis=1)))
    which = (v >> 30).astype(np.int64)
    quats = np.empty((len(v), 4), np.float64)
    order = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[which]  # slots of the three small ones
    rows = np.arange(len(v))[:, None]
    quats[rows, order] = small
    quats[np.arange(len(v)), which] = largest
    return quats


def dequantize_sh(values: np.ndarray) -> np.ndarray:
    """uchar SH coefficients -> float: the ends map to exactly -4 and +4, the rest to bucket centres."""
    v = values.astype(np.float64)
    frac = np.where(v == 0, 0.0, np.where(v == 255, 1.0, (v + 0.5) / 256.0))
    return (frac - 0.5) * 8.0


def _unpack_111011(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = packed.astype(np.uint32)
    return ((v >> 21) & 0x7FF) / 2047.0, ((v >> 11) & 0x3FF) / 1023.0, (v & 0x7FF) / 2047.0


def _unpack_8888(packed: np.ndarray) -> tuple[np.ndarray, ...]:
    v = packed.astype(np.uint32)
    return tuple(((v >> shift) & 0xFF) / 255.0 for shift in (24, 16, 8, 0))


def _read_element(path: Path, header: PlyHeader, name: str) -> np.ndarray:
    element = header.element(name)
    offset = header.check_binary_size(name)
    dtype = element.row_dtype(header.byteorder)
    with open(path, "rb") as f:
        f.seek(offset)
        data = np.fromfile(f, dtype=dtype, count=element.count)
    if len(data) != element.count:
        raise FormatError(path, f"truncated: element '{name}' has {len(data)} of {element.count} rows")
    return data



# ------------------------------------------------------------------------------------------------ write


def write_compressed_ply(scene: GaussianScene, path: str | os.PathLike) -> None:
    """Write `scene` as a SuperSplat compressed .ply (Morton-ordered; quantization in the module docstring).

    Works through the Morton order WRITE_BLOCK Gaussians at a time (whole chunks), so the float64 temporaries
    stay small next to the scene itself.
    """
    scene = scene.detach().to("cpu")
    n, k1 = len(scene), scene.shN.shape[1]
    order = torch.from_numpy(morton_order(scene.means.numpy()))
    chunks = math.ceil(n / CHUNK_SIZE)
    table = np.zeros((chunks, len(CHUNK_BOUNDS) + len(CHUNK_COLOR_BOUNDS)), "<f4")
    packed = np.zeros((n, 4), "<u4")
    sh_bytes = np.zeros((n, 3 * k1), np.uint8)
    for start in range(0, n, WRITE_BLOCK):
        rows = order[start : start + WRITE_BLOCK]
        p = {name: t[rows].double().numpy() for name, t in scene.items()}
        _encode_block(p, start, table, packed)
        if k1:  # file: channel-major (c * k1 + k)
            sh = p["shN"].transpose(0, 2, 1).reshape(len(rows), 3 * k1)
            sh_bytes[start : start + len(rows)] = np.clip(np.floor((sh / 8.0 + 0.5) * 256.0), 0, 255)
    lines = ["ply", "format binary_little_endian 1.0", f"element chunk {chunks}"]
    lines += [f"property float {name}" for name in CHUNK_BOUNDS + CHUNK_COLOR_BOUNDS]
    lines += [f"element vertex {n}"] + [f"property uint {name}" for name in PACKED]
    if k1:
        lines += [f"element sh {n}"] + [f"property uchar f_rest_{i}" for i in range(3 * k1)]
    lines += ["end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("ascii"))
        f.write(table.tobytes())
        f.write(packed.tobytes())
        if k1:
            f.write(sh_bytes.tobytes())


def _encode_block(p: dict[str, np.ndarray], start: int, table: np.ndarray, packed: np.ndarray) -> None:
    """Chunk bounds and packed words of the Gaussians [start, start + len) (whole chunks, float64 `p`)."""
    rgb = p["sh0"][:, 0, :] * SH_C0 + 0.5
    n = len(rgb)
    for a in range(0, n, CHUNK_SIZE):
        b = min(n, a + CHUNK_SIZE)
        c = (start + a) // CHUNK_SIZE
        pos_lo, pos_hi = _bounds(p["means"][a:b])
        scl_lo, scl_hi = _bounds(p["scales"][a:b])
        col_lo, col_hi = _bounds(rgb[a:b])
        table[c] = np.concatenate([pos_lo, pos_hi, scl_lo, scl_hi, col_lo, col_hi])
        # the float32 bounds are what a reader lerps with: quantize against them
        pos_lo, pos_hi, scl_lo, scl_hi, col_lo, col_hi = (table[c, 3 * i : 3 * i + 3].astype(np.float64) for i in range(6))
        rows = slice(start + a, start + b)
        packed[rows, 0] = _pack_111011(_fraction(p["means"][a:b], pos_lo, pos_hi))
        packed[rows, 2] = _pack_111011(_fraction(p["scales"][a:b], scl_lo, scl_hi))
        colour = np.round(_fraction(rgb[a:b], col_lo, col_hi) * 255.0)
        alpha = np.round(255.0 / (1.0 + np.exp(-p["opacities"][a:b])))
        bytes_ = np.concatenate([colour, alpha[:, None]], axis=1).astype(np.uint32)
        packed[rows, 3] = (bytes_[:, 0] << 24) | (bytes_[:, 1] << 16) | (bytes_[:, 2] << 8) | bytes_[:, 3]
    packed[start : start + n, 1] = pack_rotation(p["quats"])


def _bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.min(axis=0), values.max(axis=0)


def _fraction(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    span = hi - lo
    return np.clip(np.where(span > 0, (values - lo) / np.where(span > 0, span, 1.0), 0.0), 0.0, 1.0)


def _pack_111011(t: np.ndarray) -> np.ndarray:
    x = np.round(t[:, 0] * 2047).astype(np.uint32)
    y = np.round(t[:, 1] * 1023).astype(np.uint32)
    z = np.round(t[:, 2] * 2047).astype(np.uint32)
    return (x << 21) | (y << 11) | z


def pack_rotation(quats: np.ndarray) -> np.ndarray:
    """Quaternions [N, 4] (w, x, y, z) -> packed_rotation uint32 [N] (the inverse of unpack_rotation)."""
    q = quats / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-300)
    which = np.argmax(np.abs(q), axis=1)
    rows = np.arange(len(q))
    q = np.where(q[rows, which][:, None] < 0, -q, q)
    order = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[which]
    small = q[rows[:, None], order]
    v = np.clip(np.round((small / math.sqrt(2.0) + 0.5) * 1023.0), 0, 1023).astype(np.uint32)
    return (which.astype(np.uint32) << 30) | (v[:, 0] << 20) | (v[:, 1] << 10) | v[:, 2]
