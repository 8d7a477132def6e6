"""mkkellogg's .ksplat (GaussianSplats3D viewer), compression modes 0-2: read only.

Layout (little-endian), from the viewer's format and the files it writes:

    main header, 4096 bytes   u8 major (0), u8 minor (>= 1), u32 @4 section count, u32 @16 Gaussian count,
                              u16 @20 compression mode (0, 1, 2), f32 @36 / @40 SH range for mode 2
                              (0 means the default -1.5 / 1.5)
    section headers, 1024 bytes each
                              u32 @0 Gaussians, u32 @4 capacity (rows stored), u32 @8 bucket capacity,
                              u32 @12 bucket count, f32 @16 bucket block size, u16 @20 bytes per bucket (12),
                              u32 @24 position quantization range (0: 1 / 32767 by mode), u32 @32 full
                              buckets, u32 @36 partial buckets, u16 @40 SH degree (0-3)
    per section               u32 sizes of the partial buckets, bucket centres (3 x f32 each), then
                              `capacity` rows of:
        centre     3 x f32 (mode 0) | 3 x u16 q: (q - range) * block / 2 / range + bucket centre
        scale      3 x f32 | 3 x f16, linear (we store log; <= 0 becomes log-scale -10)
        rotation   4 x f32 | 4 x f16, (w, x, y, z)
        colour     4 x u8 RGBA: sh0 = (rgb / 255 - 0.5) / C0, opacity = logit(a / 255) (clamped 1e-6)
        SH         9 / 24 / 45 values, f32 | f16 | u8 (mode 2: lerp of the SH range); band by band, each
                   band channel-major (r coefficients, g, b)

Gaussians of full buckets belong to bucket i // capacity; the rest to the partial buckets in turn.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..scene import SH_C0, GaussianScene, SceneError
from .errors import FormatError
from .files import check_readable

MAIN_HEADER = 4096
SECTION_HEADER = 1024
MODES = {  # mode: (bytes per centre, scale, rotation, SH value), float dtype of centre/scale/rotation
    0: (12, 12, 16, 4, "<f4"),
    1: (6, 6, 8, 2, "<f2"),
    2: (6, 6, 8, 1, "<f2"),
}
DEFAULT_RANGE = {0: 1, 1: 32767, 2: 32767}
SH_VALUES = {0: 0, 1: 9, 2: 24, 3: 45}
OPACITY_EPS = 1e-6


def read_ksplat(path: str | os.PathLike) -> GaussianScene:
    """Load a .ksplat file as a float32 CPU scene; FormatError on malformed content."""
    path = check_readable(path)
    size = path.stat().st_size
    if size < MAIN_HEADER:
        raise FormatError(path, f"not a .ksplat file: {size} bytes, less than its 4096-byte header")
    with open(path, "rb") as f:
        head = f.read(MAIN_HEADER)
    major, minor = head[0], head[1]
    (sections,) = struct.unpack_from("<I", head, 4)
    (total,) = struct.unpack_from("<I", head, 16)
    (mode,) = struct.unpack_from("<H", head, 20)
    sh_min, sh_max = struct.unpack_from("<ff", head, 36)
    if major != 0 or minor < 1:
        raise FormatError(path, f"unsupported .ksplat version {major}.{minor} (this reader handles 0.1 and later)")
    if mode not in MODES:
        raise FormatError(path, f"unsupported .ksplat compression mode {mode} (expected 0, 1 or 2)")
    if sections * SECTION_HEADER > size - MAIN_HEADER:
        raise FormatError(path, f"truncated or corrupt .ksplat: {sections} section headers do not fit in {size} bytes")
    if not (np.isfinite(sh_min) and np.isfinite(sh_max)):
        raise FormatError(path, "corrupt .ksplat header: non-finite SH range")
    sh_range = (sh_min or -1.5, sh_max or 1.5)
    with open(path, "rb") as f:
        f.seek(MAIN_HEADER)
        headers = f.read(sections * SECTION_HEADER)
    layout = [_section(path, headers[i * SECTION_HEADER : (i + 1) * SECTION_HEADER], mode, i) for i in range(sections)]
    offset = MAIN_HEADER + sections * SECTION_HEADER
    need = offset + sum(s["bytes"] for s in layout)
    if need > size:
        raise FormatError(path, f"truncated .ksplat: its sections need {need} bytes, the file has {size}")
    count = sum(s["count"] for s in layout)
    if count != total:
        raise FormatError(path, f"corrupt .ksplat: the header says {total} Gaussians, its sections hold {count}")
    degree = max([s["degree"] for s in layout if s["count"]], default=0)
    parts = []
    with open(path, "rb") as f:
        for s in layout:
            f.seek(offset)
            parts.append(_decode_section(path, np.frombuffer(f.read(s["bytes"]), np.uint8), s, mode, sh_range, degree))
            offset += s["bytes"]
    empty = dict(means=(0, 3), quats=(0, 4), scales=(0, 3), opacities=(0,), sh0=(0, 1, 3),
                 shN=(0, SH_VALUES[degree] // 3, 3))  # fmt: skip
    tensors = {name: np.concatenate([np.zeros(shape)] + [p[name] for p in parts]) for name, shape in empty.items()}
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in tensors.items()}
    try:
        return GaussianScene(**tensors)
    except SceneError as exc:
        raise FormatError(path, f"invalid Gaussian values: {exc}") from None


def _section(path: Path, raw: bytes, mode: int, index: int) -> dict:
    count, capacity, bucket_capacity, buckets = struct.unpack_from("<IIII", raw, 0)
    (block,) = struct.unpack_from("<f", raw, 16)
    (bucket_bytes,) = struct.unpack_from("<H", raw, 20)
    (qrange,) = struct.unpack_from("<I", raw, 24)
    full, partial = struct.unpack_from("<II", raw, 32)
    (degree,) = struct.unpack_from("<H", raw, 40)
    where = f".ksplat section {index}"
    if degree not in SH_VALUES:
        raise FormatError(path, f"{where}: unsupported SH degree {degree} (expected 0-3)")
    if count > capacity:
        raise FormatError(path, f"{where}: {count} Gaussians exceed its capacity of {capacity}")
    centre, scale, rotation, sh_bytes, _ = MODES[mode]
    row = centre + scale + rotation + 4 + SH_VALUES[degree] * sh_bytes
    if mode > 0 and count:
        if bucket_bytes < 12 or full + partial > buckets or not np.isfinite(block):
            raise FormatError(path, f"{where}: malformed bucket table ({buckets} buckets of {bucket_bytes} bytes)")
        if full * bucket_capacity > count:
            raise FormatError(path, f"{where}: {full} full buckets of {bucket_capacity} exceed its {count} Gaussians")
    return dict(count=count, capacity=capacity, bucket_capacity=bucket_capacity, buckets=buckets, block=block,
                bucket_bytes=bucket_bytes, qrange=qrange or DEFAULT_RANGE[mode], full=full, partial=partial,
                degree=degree, row=row, table=partial * 4 + buckets * bucket_bytes,
                bytes=partial * 4 + buckets * bucket_bytes + capacity * row)  # fmt: skip


def _decode_section(path: Path, data: np.ndarray, s: dict, mode: int, sh_range, degree: int) -> dict[str, np.ndarray]:
    n = s["count"]
    centre, scale, rotation, sh_bytes, fdt = MODES[mode]
    rows = data[s["table"] : s["table"] + n * s["row"]].reshape(n, s["row"])
    o = 0

    def take(width: int, dtype: str) -> np.ndarray:
        nonlocal o
        part = np.ascontiguousarray(rows[:, o : o + width]).view(dtype)
        o += width
        return part.astype(np.float64)

    if mode == 0:
        means = take(12, "<f4")
    else:
        q = take(6, "<u2")
        centres = _bucket_centres(path, data, s)
        means = (q - s["qrange"]) * (s["block"] / 2.0 / s["qrange"]) + centres
    linear = take(scale, fdt)
    quats = take(rotation, fdt)
    rgba = take(4, "u1")
    values = SH_VALUES[s["degree"]]
    if values:
        raw = take(values * sh_bytes, {4: "<f4", 2: "<f2", 1: "u1"}[sh_bytes])
        if sh_bytes == 1:
            raw = sh_range[0] + raw / 255.0 * (sh_range[1] - sh_range[0])
    shN = np.zeros((n, SH_VALUES[degree] // 3, 3))  # a section of lower degree leaves the rest zero
    start = 0
    for band, (first, width) in enumerate(((0, 3), (3, 5), (8, 7))):
        if band + 1 > s["degree"]:
            break
        block = raw[:, start : start + 3 * width].reshape(n, 3, width)  # [n, channel, coefficient]
        shN[:, first : first + width, :] = block.transpose(0, 2, 1)
        start += 3 * width
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = np.where(linear > 0, np.log(np.where(linear > 0, linear, 1.0)), -10.0)
    scales = np.where(np.isnan(linear), np.nan, scales)
    alpha = np.clip(rgba[:, 3] / 255.0, OPACITY_EPS, 1 - OPACITY_EPS)
    return dict(means=means, quats=quats, scales=scales, opacities=np.log(alpha) - np.log1p(-alpha),
                sh0=((rgba[:, :3] / 255.0 - 0.5) / SH_C0)[:, None, :], shN=shN)  # fmt: skip


def _bucket_centres(path: Path, data: np.ndarray, s: dict) -> np.ndarray:
    """[count, 3] centre of each Gaussian's bucket."""
    n, capacity, full, partial = s["count"], s["bucket_capacity"], s["full"], s["partial"]
    sizes = data[: partial * 4].view("<u4").astype(np.int64)
    per_bucket = np.concatenate([np.full(full, capacity, np.int64), sizes])
    if per_bucket.sum() < n:
        raise FormatError(path, f".ksplat bucket sizes cover {int(per_bucket.sum())} of {n} Gaussians")
    index = np.searchsorted(np.cumsum(per_bucket), np.arange(n), side="right")  # no [sum(sizes)] temporary
    table = data[partial * 4 : partial * 4 + s["buckets"] * s["bucket_bytes"]].reshape(s["buckets"], s["bucket_bytes"])
    centres = np.ascontiguousarray(table[:, :12]).view("<f4").astype(np.float64)
    return centres[index]
