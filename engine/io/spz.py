"""Niantic .spz, implemented from the published format (github.com/nianticlabs/spz: README, load-spz.cc).

The `spz` PyPI package is a Rust/C++ build that does not install everywhere, so this is a numpy codec.

Containers
    versions 1-3  gzip stream of: 16-byte header + attribute arrays (+ optional extension records at the end)
    version 4     32-byte plaintext "NGSP" header, optional extension records, a table of contents
                  (u64 compressed size, u64 uncompressed size per stream), then one zstd stream per attribute
Header (little-endian): magic 0x5053474e ("NGSP"), version u32, numPoints u32, shDegree u8,
    fractionalBits u8, flags u8 (0x1 antialiased, 0x2 has extensions), reserved u8;
    version 4 adds numStreams u8 (in place of reserved), tocByteOffset u32 and 12 reserved bytes.
Arrays, in this order, N = numPoints:
    positions  N x 3 x 24-bit signed fixed point, value = int / 2^fractionalBits (version 1: N x 3 float16)
    alphas     N x u8, sigmoid(opacity) * 255
    colors     N x 3 x u8, sh0 * 0.15 * 255 + 127.5 (0.15 instead of C0 leaves room beyond [0, 1])
    scales     N x 3 x u8, (log-scale + 10) * 16
    rotations  versions 1-2: N x 3 x u8, (x, y, z) * 127.5 + 127.5 of the unit quaternion with w >= 0;
               versions 3-4: N x u32 "smallest three": bits 30-31 index of the largest of (x, y, z, w),
               then for the other three (highest index in the lowest bits) 1 sign bit + 9-bit magnitude
               of |c| / sqrt(1/2) * 511
    sh         N x dim x 3 x u8 (coefficient-major, channel inner, i.e. exactly our shN layout),
               value = (byte - 128) / 128; dim = 3, 8, 15, 24 for degree 1-4
Extensions (flag 0x2) are vendor records (camera limits, ...): skipped, as a reference build without
extension support does.

Coordinate frame (README "SPZ coordinate frame" gives the evidence with file and line references): the spz
README says data is stored in RUB (x right, y up, z back), but its reference library converts only when the
caller names a frame, and its defaults (PackOptions.from / UnpackOptions.to = UNSPECIFIED) store and load
the values unchanged; its `ply_to_spz` tool uses those defaults. splat-transform (3.x) writes .spz from the
.ply frame with `from: UNSPECIFIED` and reads it back raw, and SuperSplat opens every file through
splat-transform. So by default we store the values of our frame (the INRIA .ply frame, RDF) unchanged
("raw"): what we write opens upright in SuperSplat, and what SuperSplat / splat-transform / ply_to_spz write
opens upright here. `convert_frame=True` (engine.io `spz_frame="spec"`, CLI `--spz-frame spec`) converts
RUB <-> RDF instead, for files from tools that honour the README's frame: a 180-degree rotation about x --
positions (x, -y, -z), quaternions (w, x, -y, -z), and a sign flip of the SH coefficients that are odd in
y+z -- exact in floating point. The header has no field for the frame, so it cannot be detected.

Quantization (what a round trip through .spz costs; the tests check these bounds):
    positions 0.5 / 2^fractionalBits (we write 12 fractional bits, fewer only if |x| >= 2048),
    log-scales 1/32 inside [-10, 5.94] (clamped outside), alpha 0.5/255, sh0 0.5 / (0.15 * 255) = 0.013
    inside [-3.33, 3.33], rotations ~7e-4 per component (v3/v4) or ~4e-3 (v2),
    SH (sh1_bits + 1 / 2) -- about 0.035 for degree 1 with the default 5 bits and 0.066 for degrees 2-3
    with 4 bits (the reference defaults) -- inside [-1, 1).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..scene import GaussianScene, SceneError
from .errors import FormatError
from .files import check_readable

MAGIC = 0x5053474E  # "NGSP" as a little-endian u32
LEGACY_HEADER = struct.Struct("<IIIBBBB")  # versions 1-3, inside the gzip stream
NGSP_HEADER = struct.Struct("<IIIBBBBI12s")  # version 4, plaintext
READ_VERSIONS = (1, 2, 3, 4)
WRITE_VERSIONS = (2, 3, 4)
DEFAULT_VERSION = 3  # the gzip version every current reader (PlayCanvas, three.js/Spark, ...) accepts
COLOR_SCALE = 0.15
SQRT1_2 = math.sqrt(0.5)
SH_DIM = {0: 0, 1: 3, 2: 8, 3: 15, 4: 24}  # coefficients per channel beyond the DC term
MAX_FRACTIONAL_BITS = 24
FLAG_ANTIALIASED = 0x1
MAX_GZIP_RATIO = 1032  # deflate cannot expand more than ~1032:1
MAX_ZSTD_RATIO = 1024  # the reference's bound on numPoints vs file size
ALPHA_CLAMP = (0.25 / 255.0, 254.75 / 255.0)  # keeps logits finite; re-encodes to the same byte
BLOCK = 1 << 14  # Gaussians decoded / encoded at a time (bounds the float64 temporaries)
# Sign of each SH coefficient under (x, y, z) -> (x, -y, -z), the RUB <-> RDF change of frame:
# -1 where the basis function is odd in y+z (deg 1: y z x; deg 2: xy yz zz xz xx-yy; deg 3: ...).
SH_FLIP = np.array(
    [-1, -1, 1,
     -1, 1, 1, -1, 1,
     -1, 1, -1, -1, 1, -1, 1,
     -1, 1, -1, 1, 1, -1, 1, -1, -1], dtype=np.float64)  # fmt: skip


@dataclass
class Packed:
    """The byte arrays of an .spz file, before decoding (all uint8, flat)."""

    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    flags: int
    positions: np.ndarray
    alphas: np.ndarray
    colors: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    sh: np.ndarray


def stream_sizes(version: int, n: int, sh_degree: int) -> list[tuple[str, int]]:
    """(array name, byte size) in file order for a version / point count / SH degree."""
    return [
        ("positions", n * (6 if version == 1 else 9)),
        ("alphas", n),
        ("colors", n * 3),
        ("scales", n * 3),
        ("rotations", n * (4 if version >= 3 else 3)),
        ("sh", n * SH_DIM[sh_degree] * 3),
    ]


# ------------------------------------------------------------------------------------------------- read


def read_spz(path: str | os.PathLike, *, convert_frame: bool = False) -> GaussianScene:
    """Load an .spz file (versions 1-4) as a float32 CPU scene; FormatError on malformed content.

    `convert_frame` turns a file stored in RUB into ours (RDF); the default reads the values as stored (the
    frame SuperSplat and splat-transform use); see the module docstring.
    """
    path = check_readable(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        packed = _parse_gzip(path, data)
    elif len(data) >= 4 and struct.unpack_from("<I", data)[0] == MAGIC:
        packed = _parse_ngsp(path, data)
    else:
        raise FormatError(
            path,
            "not an .spz file: neither a gzip stream (versions 1-3) nor an 'NGSP' header (version 4)",
        )
    return _decode(path, packed, convert_frame)


def _check_header(path: Path, version: int, n: int, sh_degree: int, fractional_bits: int) -> None:
    if version not in READ_VERSIONS:
        raise FormatError(path, f"unsupported SPZ version {version} (this reader handles versions 1-4)")
    if sh_degree not in SH_DIM:
        raise FormatError(path, f"unsupported SH degree {sh_degree} in the SPZ header (expected 0-4)")
    if fractional_bits > MAX_FRACTIONAL_BITS:
        raise FormatError(path, f"invalid SPZ header: {fractional_bits} fractional bits (at most 24)")


class _GzipReader:
    """Concatenated gzip members read as one stream (what `gzip -c a b` and some writers produce).

    zlib checks each member's CRC-32 and length trailer; `finish` drains what is left (extension records)
    without keeping it and refuses a stream whose last member has no trailer (a file cut by a few bytes).
    """

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.tail = data

    def _piece(self, limit: int) -> bytes | None:
        """Up to `limit` more bytes (b"" is fine: progress on headers); None at the end of the input."""
        if self.inflater.eof:
            rest = self.inflater.unused_data
            if rest[:2] != b"\x1f\x8b":
                return None  # no further member (trailing bytes that are not gzip are ignored, as gzip does)
            self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self.tail = rest
        before = len(self.tail)
        try:
            piece = self.inflater.decompress(self.tail, limit)
        except zlib.error as exc:
            raise FormatError(self.path, f"corrupt gzip data in .spz: {exc}") from None
        self.tail = self.inflater.unconsumed_tail
        if not piece and len(self.tail) == before and not self.inflater.eof:
            return None  # input exhausted inside a member
        return piece

    def take(self, count: int) -> np.ndarray:
        """Exactly `count` decompressed bytes, or fewer if the stream ends first."""
        out = np.empty(count, np.uint8)
        got = 0
        while got < count:
            piece = self._piece(min(count - got, 1 << 26))
            if piece is None:
                break
            out[got : got + len(piece)] = np.frombuffer(piece, np.uint8)
            got += len(piece)
        return out[:got]

    def finish(self) -> None:
        while self._piece(1 << 20) is not None:
            pass
        if not self.inflater.eof:
            raise FormatError(
                self.path,
                "truncated .spz: the gzip stream ends before its CRC/length trailer (the file was cut short)",
            )


def _parse_gzip(path: Path, data: bytes) -> Packed:
    reader = _GzipReader(path, data)
    take = reader.take

    head = take(LEGACY_HEADER.size)
    if len(head) < LEGACY_HEADER.size:
        raise FormatError(path, f"truncated .spz: the gzip stream holds only {len(head)} bytes, less than a header")
    magic, version, n, sh_degree, fractional_bits, flags, _ = LEGACY_HEADER.unpack(head.tobytes())
    if magic != MAGIC:
        raise FormatError(path, f"not an .spz file: bad magic 0x{magic:08x} inside the gzip stream (expected 'NGSP')")
    _check_header(path, version, n, sh_degree, fractional_bits)
    sizes = stream_sizes(version, n, sh_degree)
    total = sum(size for _, size in sizes)
    if total > len(data) * MAX_GZIP_RATIO + (1 << 16):
        raise FormatError(
            path,
            f"absurd point count: the header declares {n} Gaussians ({total} bytes) but a {len(data)}-byte "
            "gzip stream cannot expand that far",
        )
    body = take(total)
    if len(body) < total:
        raise FormatError(
            path,
            f"truncated .spz: {n} Gaussians need {total} bytes after the header, the stream holds {len(body)}",
        )
    reader.finish()
    arrays, start = {}, 0
    for name, size in sizes:
        arrays[name] = body[start : start + size]
        start += size
    return Packed(version, n, sh_degree, fractional_bits, flags, **arrays)


def _parse_ngsp(path: Path, data: bytes) -> Packed:
    if len(data) < NGSP_HEADER.size:
        raise FormatError(path, f"truncated .spz: {len(data)} bytes, less than the 32-byte version-4 header")
    _, version, n, sh_degree, fractional_bits, flags, num_streams, toc, _ = NGSP_HEADER.unpack_from(data)
    if version < 4:
        raise FormatError(path, f"unsupported SPZ version {version} with a plaintext header (expected 4)")
    _check_header(path, version, n, sh_degree, fractional_bits)
    if n * 9 > len(data) * MAX_ZSTD_RATIO:
        raise FormatError(
            path, f"absurd point count: the header declares {n} Gaussians in a file of {len(data)} bytes"
        )
    sizes = [(name, size) for name, size in stream_sizes(version, n, sh_degree) if size > 0]
    if num_streams != len(sizes):
        raise FormatError(path, f"SPZ header lists {num_streams} streams, expected {len(sizes)} for this content")
    toc_end = toc + 16 * num_streams
    if toc < NGSP_HEADER.size or toc_end > len(data):
        raise FormatError(path, f"invalid SPZ table of contents offset {toc} for a file of {len(data)} bytes")
    try:
        import zstandard
    except ImportError:
        raise FormatError(path, "reading SPZ version 4 needs the 'zstandard' package (pip install zstandard)") from None
    arrays = {name: np.zeros(0, np.uint8) for name, _ in stream_sizes(version, 0, 0)}
    offset = toc_end
    decompressor = zstandard.ZstdDecompressor()
    for i, (name, expected) in enumerate(sizes):
        compressed, uncompressed = struct.unpack_from("<QQ", data, toc + 16 * i)
        if uncompressed != expected:
            raise FormatError(path, f"SPZ stream '{name}' holds {uncompressed} bytes, expected {expected}")
        if offset + compressed > len(data):
            raise FormatError(path, f"truncated .spz: stream '{name}' runs past the end of the file")
        try:
            raw = decompressor.decompress(data[offset : offset + compressed], max_output_size=expected)
        except zstandard.ZstdError as exc:
            raise FormatError(path, f"corrupt zstd data in SPZ stream '{name}': {exc}") from None
        if len(raw) != expected:
            raise FormatError(path, f"SPZ stream '{name}' decompressed to {len(raw)} bytes, expected {expected}")
        arrays[name] = np.frombuffer(raw, np.uint8)
        offset += compressed
    return Packed(version, n, sh_degree, fractional_bits, flags, **arrays)


def _decode(path: Path, p: Packed, convert_frame: bool) -> GaussianScene:
    n, dim = p.num_points, SH_DIM[p.sh_degree]
    if p.sh_degree > 3:
        warnings.warn(f"{path}: SH degree {p.sh_degree} truncated to 3 (the highest this editor supports)")
    keep = min(dim, SH_DIM[3])
    out = {
        "means": np.empty((n, 3), np.float32),
        "quats": np.empty((n, 4), np.float32),
        "scales": np.empty((n, 3), np.float32),
        "opacities": np.empty((n,), np.float32),
        "sh0": np.empty((n, 1, 3), np.float32),
        "shN": np.empty((n, keep, 3), np.float32),
    }
    pos_bytes = 6 if p.version == 1 else 9
    rot_bytes = 4 if p.version >= 3 else 3
    for a in range(0, n, BLOCK):  # blocks bound the float64 temporaries
        b = min(n, a + BLOCK)
        block = dict(
            positions=p.positions[a * pos_bytes : b * pos_bytes],
            alphas=p.alphas[a:b],
            colors=p.colors[a * 3 : b * 3],
            scales=p.scales[a * 3 : b * 3],
            rotations=p.rotations[a * rot_bytes : b * rot_bytes],
            sh=p.sh[a * dim * 3 : b * dim * 3],
        )
        values = _decode_block(Packed(p.version, b - a, p.sh_degree, p.fractional_bits, p.flags, **block))
        if convert_frame:
            values["means"], values["quats"], values["shN"] = _flip_frame(values["means"], values["quats"], values["shN"])
        values["shN"] = values["shN"][:, :keep]
        for name, array in values.items():
            out[name][a:b] = array
    try:
        return GaussianScene(**{name: torch.from_numpy(array) for name, array in out.items()})
    except SceneError as exc:
        raise FormatError(path, f"invalid Gaussian values: {exc}") from None


def _decode_block(p: Packed) -> dict[str, np.ndarray]:
    """SPZ byte arrays of a run of Gaussians -> float64 parameters (stored frame)."""
    n = p.num_points
    if p.version == 1:
        means = p.positions.view("<f2").reshape(n, 3).astype(np.float64)
    else:
        b = p.positions.reshape(n, 3, 3).astype(np.int32)
        fixed = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        fixed = (fixed ^ 0x800000) - 0x800000  # sign-extend 24 bits
        means = fixed.astype(np.float64) / float(1 << p.fractional_bits)
    alpha = np.clip(p.alphas.astype(np.float64) / 255.0, *ALPHA_CLAMP)
    if p.version >= 3:
        xyzw = _unpack_smallest_three(p.rotations.view("<u4"))
    else:
        xyz = p.rotations.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz**2).sum(axis=1)))
        xyzw = np.concatenate([xyz, w[:, None]], axis=1)
    return {
        "means": means,
        "quats": xyzw[:, [3, 0, 1, 2]],
        "scales": p.scales.reshape(n, 3).astype(np.float64) / 16.0 - 10.0,
        "opacities": np.log(alpha) - np.log1p(-alpha),
        "sh0": ((p.colors.reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE)[:, None, :],
        "shN": (p.sh.reshape(n, SH_DIM[p.sh_degree], 3).astype(np.float64) - 128.0) / 128.0,
    }


def _unpack_smallest_three(comp: np.ndarray) -> np.ndarray:
    """u32 [N] -> unit quaternions [N, 4] in (x, y, z, w) order."""
    comp = comp.astype(np.uint32)
    largest = (comp >> 30).astype(np.int64)
    out = np.zeros((len(comp), 4), np.float64)
    for i in range(4):
        # the non-largest components are packed highest index first into the lowest bits
        shift = (10 * ((3 - i) - (largest > i))).astype(np.uint32)
        mag = ((comp >> shift) & 0x1FF).astype(np.float64) * (SQRT1_2 / 511.0)
        negative = ((comp >> (shift + 9)) & 1).astype(bool)
        out[:, i] = np.where(largest == i, 0.0, np.where(negative, -mag, mag))
    rows = np.arange(len(comp))
    out[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (out**2).sum(axis=1)))
    return out


def _flip_frame(means: np.ndarray, quats: np.ndarray, shN: np.ndarray) -> tuple[np.ndarray, ...]:
    """RUB <-> RDF (its own inverse): 180-degree rotation about x applied to positions, rotations and SH."""
    means = means * np.array([1.0, -1.0, -1.0])
    quats = quats * np.array([1.0, 1.0, -1.0, -1.0])  # (w, x, y, z)
    shN = shN * SH_FLIP[: shN.shape[1], None]
    return means, quats, shN


# ------------------------------------------------------------------------------------------------ write


def write_spz(
    scene: GaussianScene,
    path: str | os.PathLike,
    *,
    version: int = DEFAULT_VERSION,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    convert_frame: bool = False,
) -> None:
    """Write `scene` as .spz `version` (2 or 3: gzip; 4: zstd, needs the `zstandard` package).

    `sh1_bits` / `sh_rest_bits` (1-8) are the effective precisions of degree-1 and degree-2/3 SH coefficients
    (the reference defaults 5 and 4: smaller files after compression); every value is still one byte.
    """
    path = Path(path)
    if version not in WRITE_VERSIONS:
        raise FormatError(path, f"cannot write SPZ version {version} (writable: {', '.join(map(str, WRITE_VERSIONS))})")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise FormatError(path, f"SH bits must be 1-8, got sh1_bits={sh1_bits}, sh_rest_bits={sh_rest_bits}")
    packed = encode(scene, version=version, sh1_bits=sh1_bits, sh_rest_bits=sh_rest_bits, convert_frame=convert_frame, path=path)
    with open(path, "wb") as f:
        write_packed(packed, f)


def encode(
    scene: GaussianScene,
    *,
    version: int = DEFAULT_VERSION,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    convert_frame: bool = False,
    path: Path | None = None,
) -> Packed:
    """Quantize a scene into SPZ byte arrays (the inverse of the decoder, up to quantization)."""
    scene = scene.detach().to("cpu")
    n, degree = len(scene), scene.sh_degree
    extent = float(scene.means.abs().max()) if n else 0.0
    fractional_bits = 12  # ~0.25 mm at metre scale, as the reference writes
    while fractional_bits > 0 and extent * (1 << fractional_bits) >= (1 << 23) - 1:
        fractional_bits -= 1
    if extent * (1 << fractional_bits) >= (1 << 23) - 1:
        raise FormatError(path, f"positions up to {extent:g} do not fit SPZ's 24-bit fixed point (|x| < 8388607)")
    rot_bytes = 4 if version >= 3 else 3
    dim3 = 3 * SH_DIM[degree]
    packed = Packed(
        version, n, degree, fractional_bits, 0,
        positions=np.empty(9 * n, np.uint8), alphas=np.empty(n, np.uint8), colors=np.empty(3 * n, np.uint8),
        scales=np.empty(3 * n, np.uint8), rotations=np.empty(rot_bytes * n, np.uint8), sh=np.empty(dim3 * n, np.uint8),
    )  # fmt: skip
    bits = np.full(SH_DIM[degree], sh_rest_bits)
    bits[:3] = sh1_bits
    bucket = (1 << (8 - bits)).astype(np.float64)[None, :, None]
    for a in range(0, n, BLOCK):  # blocks bound the float64 temporaries
        b = min(n, a + BLOCK)
        part = {name: t[a:b].numpy().astype(np.float64) for name, t in scene.items()}
        means, quats, shN = part["means"], part["quats"], part["shN"]
        if convert_frame:
            means, quats, shN = _flip_frame(means, quats, shN)
        fixed = _round(means * (1 << fractional_bits)).astype(np.int64) & 0xFFFFFF
        packed.positions[9 * a : 9 * b] = np.stack([(fixed >> k) & 0xFF for k in (0, 8, 16)], axis=-1).reshape(-1)
        packed.alphas[a:b] = _to_u8(1.0 / (1.0 + np.exp(-part["opacities"])) * 255.0)
        packed.colors[3 * a : 3 * b] = _to_u8(part["sh0"][:, 0, :] * (COLOR_SCALE * 255.0) + 127.5).reshape(-1)
        packed.scales[3 * a : 3 * b] = _to_u8((part["scales"] + 10.0) * 16.0).reshape(-1)
        xyzw = quats[:, [1, 2, 3, 0]]
        xyzw = xyzw / np.maximum(np.linalg.norm(xyzw, axis=1, keepdims=True), 1e-300)
        if version >= 3:
            packed.rotations[4 * a : 4 * b] = _pack_smallest_three(xyzw).astype("<u4").view(np.uint8)
        else:
            xyzw = np.where(xyzw[:, 3:4] < 0, -xyzw, xyzw)
            packed.rotations[3 * a : 3 * b] = _to_u8(xyzw[:, :3] * 127.5 + 127.5).reshape(-1)
        if degree > 0:
            q = np.clip(_round(shN * 128.0) + 128.0, 0, 255)  # [n, dim, 3]
            q = np.floor((q + np.floor(bucket / 2)) / bucket) * bucket  # to the centre of its bucket
            packed.sh[dim3 * a : dim3 * b] = np.clip(q, 0, 255).astype(np.uint8).reshape(-1)
    return packed


def write_packed(p: Packed, f) -> None:
    """Write packed arrays to the binary file `f`: gzip container for versions 2-3, NGSP + zstd streams for 4."""
    arrays = [p.positions, p.alphas, p.colors, p.scales, p.rotations, p.sh]
    if p.version < 4:
        header = LEGACY_HEADER.pack(MAGIC, p.version, p.num_points, p.sh_degree, p.fractional_bits, p.flags, 0)
        with gzip.GzipFile(filename="", fileobj=f, mode="wb", compresslevel=6, mtime=0) as z:
            z.write(header)
            for a in arrays:
                z.write(memoryview(a))
        return
    try:
        import zstandard
    except ImportError:
        raise FormatError(None, "writing SPZ version 4 needs the 'zstandard' package (pip install zstandard)") from None
    compressor = zstandard.ZstdCompressor(level=12)
    streams = [(a.size, compressor.compress(memoryview(a))) for a in arrays if a.size]
    toc_offset = NGSP_HEADER.size
    f.write(NGSP_HEADER.pack(
        MAGIC, p.version, p.num_points, p.sh_degree, p.fractional_bits, p.flags, len(streams), toc_offset, b"\0" * 12
    ))  # fmt: skip
    f.write(b"".join(struct.pack("<QQ", len(c), size) for size, c in streams))
    for _, c in streams:
        f.write(c)


def _pack_smallest_three(xyzw: np.ndarray) -> np.ndarray:
    """Unit quaternions [N, 4] (x, y, z, w) -> u32 [N] (see module docstring)."""
    n = len(xyzw)
    largest = np.argmax(np.abs(xyzw), axis=1)
    negate = xyzw[np.arange(n), largest] < 0
    comp = largest.astype(np.uint64)
    for i in range(4):
        keep = largest != i
        negbit = ((xyzw[:, i] < 0) ^ negate).astype(np.uint64)
        mag = np.minimum(np.floor(511.0 * np.abs(xyzw[:, i]) / SQRT1_2 + 0.5), 511).astype(np.uint64)
        comp = np.where(keep, (comp << np.uint64(10)) | (negbit << np.uint64(9)) | mag, comp)
    return comp.astype(np.uint32)


def _round(x: np.ndarray) -> np.ndarray:
    """Round to nearest, halves up (the reference's std::round rounds negative halves down; decoders can't
    tell the difference)."""
    return np.floor(x + 0.5)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round(x), 0, 255).astype(np.uint8)
