"""PlayCanvas SOG ("spatially ordered Gaussians"), version 2: read and write, bundled (.sog) or unbundled.

Implemented from PlayCanvas's "SOG format" page and files splat-transform writes. A SOG is a meta.json plus
lossless WebP images; a `.sog` is a zip of the same files at its root, an unbundled SOG is a folder with
`meta.json` beside the images. Every per-Gaussian image holds Gaussian i at pixel (i % W, i // W).

    means_l / means_u  RGB: low / high byte of a 16-bit value per axis, lerped between meta.means.mins/maxs
                       of t = sign(x) * ln(1 + |x|); x = sign(t) * (e^|t| - 1)
    quats              RGB: the three smaller components of the unit quaternion (w, x, y, z) made positive
                       in its largest, in (w, x, y, z) order skipping the largest, each c = (b / 255 * 2 - 1)
                       / sqrt(2); A = 252 + index of the largest, which is sqrt(1 - sum of squares)
    scales             RGB: indices into meta.scales.codebook (256 log-scales)
    sh0                RGB: indices into meta.sh0.codebook (256 DC coefficients); A = sigmoid(opacity) * 255
    shN_labels         RG: 16-bit index into the SH palette (R low byte)
    shN_centroids      palette entry k lies in row k // 64, columns (k % 64) * C .. + C - 1 (C = 3, 8, 15
                       coefficients for bands 1-3); RGB: indices into meta.shN.codebook for the three channels

Positions are in the frame of 3DGS .ply files (ours), so nothing is converted. Opacity bytes 0 / 255 read as
logits of 1e-6 / 1 - 1e-6 (+/-13.8), as splat-transform reads them.

The writer orders Gaussians along a Morton (Z-order) curve of their positions (what "spatially ordered"
asks for: neighbouring pixels hold nearby Gaussians, so the images compress), builds each codebook by 1-D
k-means (256 entries), the SH palette by k-means of the coefficient vectors (exact when N <= palette size),
and writes WebP with Pillow's `lossless=True, exact=True` (without `exact` libwebp may rewrite the RGB of
pixels whose alpha is 0, which here are colours of transparent splats).

What a round trip costs (checked by tests/io/test_sog.py): positions 1/65535 of the log-range per axis
(x ~ 1e-5 * (1 + |x|) for a scene spanning a few units); rotations ~ 0.003 per component; log-scales, DC
colour and SH values the distance to the nearest of 256 k-means codebook entries (the writer reports no
loss bound: it depends on the spread of values); opacity 0.5 / 255 in sigmoid space.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..scene import GaussianScene, SceneError
from .errors import FormatError
from .files import atomic_write, check_readable
from .morton import morton_order

VERSION = 2
SH_COEFFS = {1: 3, 2: 8, 3: 15}  # SH bands -> coefficients per channel
PALETTE_ROW = 64  # palette entries per row of shN_centroids
MAX_PALETTE = 1 << 16  # labels are 16-bit
DEFAULT_PALETTE = 4096  # SH palette size the writer uses for larger scenes (k-means beyond that count)
KMEANS_FIT_ROWS = 65536  # the palette is fitted on at most this many sampled rows, then every row assigned
OPACITY_EPS = 1e-6
MAX_COUNT = 200_000_000
MAX_PIXELS_PER_FILE_BYTE = 1024  # a decoded image may be at most this many RGBA pixels per compressed byte
MIN_PIXEL_BUDGET = 1 << 22
FILES = {"means": ("means_l.webp", "means_u.webp"), "scales": ("scales.webp",), "quats": ("quats.webp",),
         "sh0": ("sh0.webp",), "shN": ("shN_centroids.webp", "shN_labels.webp")}  # fmt: skip
# Slots of the three stored components for each index of the largest one, in (w, x, y, z).
QUAT_SLOTS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


# ------------------------------------------------------------------------------------------------ read


def read_sog(path: str | os.PathLike) -> GaussianScene:
    """Load a .sog bundle or an unbundled SOG (the path of its meta.json) as a float32 CPU scene."""
    path = check_readable(path)
    files = _Files(path)
    try:
        raw = files.read("meta.json" if files.bundled else path.name)
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(path, f"SOG meta.json is not valid JSON ({' '.join(str(exc).split())})") from None
        return _decode(path, meta, files)
    finally:
        files.close()


class _Files:
    """The files of one SOG: members of a zip, or files next to meta.json; reads are size-checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bundled = path.suffix.lower() == ".sog"
        self.zip = None
        if self.bundled:
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise FormatError(path, f"not a .sog bundle: not a readable zip archive ({exc})") from None

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise FormatError(self.path, f"SOG names an invalid file {name!r} (expected a plain file name)")
        try:
            if self.zip is not None:
                info = self.zip.getinfo(name)
                if info.file_size > limit:
                    raise FormatError(self.path, f"SOG member '{name}' is {info.file_size} bytes (limit {limit})")
                return self.zip.read(info)
            target = self.path.parent / name
            if target.stat().st_size > limit:
                raise FormatError(self.path, f"SOG file '{name}' is {target.stat().st_size} bytes (limit {limit})")
            return target.read_bytes()
        except KeyError:
            raise FormatError(self.path, f"SOG bundle has no member '{name}'") from None
        except FileNotFoundError:
            raise FormatError(self.path, f"SOG file '{name}' is missing next to meta.json") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(self.path, f"cannot read SOG file '{name}': {exc}") from None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _field(path: Path, meta: dict, key: str, *, optional: bool = False) -> dict | None:
    value = meta.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise FormatError(path, f"SOG meta.json has no '{key}' object")
    files = value.get("files")
    if not isinstance(files, list) or len(files) != len(FILES[key]) or not all(isinstance(f, str) for f in files):
        raise FormatError(path, f"SOG meta.json '{key}.files' must list {len(FILES[key])} file name(s)")
    return value


def _numbers(path: Path, value, what: str, length: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != (length,) or not np.isfinite(array).all():
        raise FormatError(path, f"SOG meta.json '{what}' must be {length} finite numbers")
    return array


def _decode(path: Path, meta, files: _Files) -> GaussianScene:
    if not isinstance(meta, dict):
        raise FormatError(path, "SOG meta.json is not a JSON object")
    if "lodLevels" in meta:
        raise FormatError(path, "this is a streamed-LOD SOG index (lod-meta.json); open one of its SOG files")
    version = meta.get("version")
    if version is None and "means" not in meta:
        raise FormatError(path, "not a SOG meta.json (it has neither 'version' nor 'means')")
    if version != VERSION:
        what = "no 'version' (a SOG version 1 file)" if version is None else f"version {version!r}"
        raise FormatError(path, f"unsupported SOG {what}: this reader handles SOG version {VERSION}")
    count = meta.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
        raise FormatError(path, f"SOG meta.json 'count' must be an integer in 0..{MAX_COUNT}, got {count!r}")
    means_m, scales_m, quats_m, sh0_m = (_field(path, meta, k) for k in ("means", "scales", "quats", "sh0"))
    shN_m = _field(path, meta, "shN", optional=True)
    mins = _numbers(path, means_m.get("mins"), "means.mins", 3)
    maxs = _numbers(path, means_m.get("maxs"), "means.maxs", 3)
    scale_book = _numbers(path, scales_m.get("codebook"), "scales.codebook", 256)
    sh0_book = _numbers(path, sh0_m.get("codebook"), "sh0.codebook", 256)

    def image(name: str) -> np.ndarray:
        return _decode_webp(path, files, name, count)

    lo, hi = image(means_m["files"][0]), image(means_m["files"][1])
    q16 = lo[:, :3].astype(np.int64) | (hi[:, :3].astype(np.int64) << 8)
    span = np.where(maxs - mins == 0, 1.0, maxs - mins)
    t = mins + span * (q16 / 65535.0)
    means = np.sign(t) * np.expm1(np.abs(t))
    quats = unpack_quats(image(quats_m["files"][0]))
    scales = scale_book[image(scales_m["files"][0])[:, :3]]
    sh0_pixels = image(sh0_m["files"][0])
    sh0 = sh0_book[sh0_pixels[:, :3]][:, None, :]
    alpha = np.clip(sh0_pixels[:, 3] / 255.0, OPACITY_EPS, 1 - OPACITY_EPS)
    opacities = np.log(alpha) - np.log1p(-alpha)
    shN = np.zeros((count, 0, 3))
    if shN_m is not None:
        shN = _decode_shN(path, files, shN_m, count)
    tensors = dict(means=means, quats=quats, scales=scales, opacities=opacities, sh0=sh0, shN=shN)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in tensors.items()}
    try:
        return GaussianScene(**tensors)
    except SceneError as exc:
        raise FormatError(path, f"invalid Gaussian values: {exc}") from None


def _decode_shN(path: Path, files: _Files, shN_m: dict, count: int) -> np.ndarray:
    bands = shN_m.get("bands")
    if bands not in SH_COEFFS:
        raise FormatError(path, f"SOG meta.json 'shN.bands' must be 1, 2 or 3, got {bands!r}")
    coeffs = SH_COEFFS[bands]
    palette = shN_m.get("count")
    if not isinstance(palette, int) or isinstance(palette, bool) or not 1 <= palette <= MAX_PALETTE:
        raise FormatError(path, f"SOG meta.json 'shN.count' must be 1..{MAX_PALETTE}, got {palette!r}")
    book = _numbers(path, shN_m.get("codebook"), "shN.codebook", 256)
    labels_px = _decode_webp(path, files, shN_m["files"][1], count)
    centroids_img = _decode_webp(path, files, shN_m["files"][0], None, keep_shape=True)
    rows, width = centroids_img.shape[:2]
    if width != PALETTE_ROW * coeffs:
        raise FormatError(
            path, f"SOG shN_centroids is {width} pixels wide, expected {PALETTE_ROW * coeffs} for {bands} band(s)"
        )
    if rows * PALETTE_ROW < palette:
        raise FormatError(path, f"SOG shN_centroids has {rows} rows, too few for {palette} palette entries")
    entries = centroids_img[:, :, :3].reshape(rows * PALETTE_ROW, coeffs, 3)[:palette]  # [K, C, 3] bytes
    values = book[entries]  # [K, C, 3]
    labels = labels_px[:, 0].astype(np.int64) | (labels_px[:, 1].astype(np.int64) << 8)
    bad = labels >= palette
    if bad.any():
        raise FormatError(
            path, f"{int(bad.sum())} SOG labels point past the {palette}-entry SH palette (first at Gaussian "
            f"{int(np.flatnonzero(bad)[0])})"
        )
    return values[labels]


def _decode_webp(path: Path, files: _Files, name: str, count: int | None, keep_shape: bool = False) -> np.ndarray:
    """RGBA pixels of one image: [count, 4] in index order (or [H, W, 4] with keep_shape), uint8."""
    from PIL import Image

    data = files.read(name)
    budget = max(MIN_PIXEL_BUDGET, MAX_PIXELS_PER_FILE_BYTE * len(data))
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > budget:
                raise FormatError(
                    path, f"SOG image '{name}' declares {width}x{height} pixels in {len(data)} bytes (refused)"
                )
            if count is not None and width * height < count:
                raise FormatError(
                    path, f"SOG image '{name}' has {width}x{height} pixels, fewer than the {count} Gaussians"
                )
            if count is not None and width * height > 2 * count + 65536:
                raise FormatError(path, f"SOG image '{name}' is {width}x{height}, far larger than {count} Gaussians")
            pixels = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except FormatError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FormatError(path, f"SOG image '{name}' cannot be decoded: {' '.join(str(exc).split())}") from None
    if keep_shape:
        return pixels
    return pixels.reshape(-1, 4)[:count]


def unpack_quats(pixels: np.ndarray) -> np.ndarray:
    """quats.webp pixels [N, 4] -> unit quaternions [N, 4] (w, x, y, z); an unknown tag reads as identity."""
    tag = pixels[:, 3].astype(np.int64) - 252
    valid = (tag >= 0) & (tag <= 3)
    largest = np.where(valid, tag, 0)
    small = (pixels[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    out = np.zeros((len(pixels), 4))
    rows = np.arange(len(pixels))[:, None]
    out[rows, QUAT_SLOTS[largest]] = small
    out[rows[:, 0], largest] = np.sqrt(np.maximum(0.0, 1.0 - (small**2).sum(axis=1)))
    out[~valid] = (1.0, 0.0, 0.0, 0.0)
    return out


# ------------------------------------------------------------------------------------------------ write


def write_sog(
    scene: GaussianScene, path: str | os.PathLike, *, bundled: bool | None = None,
    palette_size: int = DEFAULT_PALETTE, iterations: int = 10, seed: int = 0,
) -> None:
    """Write `scene` as a .sog bundle (zip), or unbundled: `path` is then the meta.json and the images are
    written beside it (each atomically, before meta.json). `bundled` defaults to "path is not *.json".

    palette_size (1..65536): SH palette entries when the scene has more Gaussians than that (k-means with
    `iterations` Lloyd steps, deterministic for `seed`); smaller scenes keep one entry per Gaussian.
    """
    path = Path(path)
    if not 1 <= palette_size <= MAX_PALETTE:
        raise FormatError(path, f"SOG palette size must be 1..{MAX_PALETTE}, got {palette_size}")
    files = encode_sog(scene, palette_size=palette_size, iterations=iterations, seed=seed)
    if bundled is None:
        bundled = path.suffix.lower() != ".json"
    if not bundled:
        for name, data in files.items():
            if name != "meta.json":
                with atomic_write(path.parent / name) as tmp:
                    tmp.write_bytes(data)
        path.write_bytes(files["meta.json"])  # the caller's atomic_write renames this into place last
        return
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():  # images are already compressed: store them
            kind = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=kind)


def encode_sog(scene: GaussianScene, *, palette_size: int = DEFAULT_PALETTE, iterations: int = 10, seed: int = 0) -> dict[str, bytes]:
    """The files of a SOG (name -> bytes; meta.json last) for `scene`, Gaussians in Morton order."""
    scene = scene.detach().to("cpu")
    n = len(scene)
    order = torch.from_numpy(morton_order(scene.means.numpy()))
    p = {name: t[order].numpy() for name, t in scene.items()}  # float32 (float64 only per field, below)
    width = max(4, math.ceil(math.sqrt(max(n, 1)) / 4) * 4)
    height = max(4, math.ceil(n / width / 4) * 4)

    def webp(pixels: np.ndarray, mode: str) -> bytes:
        channels = len(mode)
        full = np.zeros((height * width, channels), np.uint8)
        full[:n] = pixels
        return _encode_webp(full.reshape(height, width, channels), mode)

    means = p["means"].astype(np.float64)
    t = np.sign(means) * np.log1p(np.abs(means))
    mins = t.min(axis=0) if n else np.zeros(3)
    maxs = t.max(axis=0) if n else np.zeros(3)
    span = np.where(maxs - mins == 0, 1.0, maxs - mins)
    q16 = np.clip(np.round((t - mins) / span * 65535.0), 0, 65535).astype(np.int64)
    files = {
        "means_l.webp": webp((q16 & 0xFF).astype(np.uint8), "RGB"),
        "means_u.webp": webp((q16 >> 8).astype(np.uint8), "RGB"),
        "quats.webp": webp(pack_quats(p["quats"].astype(np.float64)), "RGBA"),
    }
    scale_book = kmeans_1d(p["scales"].reshape(-1))
    files["scales.webp"] = webp(nearest_1d(scale_book, p["scales"]).astype(np.uint8), "RGB")
    sh0_book = kmeans_1d(p["sh0"].reshape(-1))
    alpha = np.round(255.0 / (1.0 + np.exp(-p["opacities"].astype(np.float64))))
    sh0_px = np.concatenate([nearest_1d(sh0_book, p["sh0"][:, 0, :]), alpha[:, None]], axis=1)
    files["sh0.webp"] = webp(sh0_px.astype(np.uint8), "RGBA")
    meta = {
        "version": VERSION,
        "asset": {"generator": "splat-part-editor"},
        "count": n,
        "means": {"mins": mins.tolist(), "maxs": maxs.tolist(), "files": list(FILES["means"])},
        "scales": {"codebook": scale_book.tolist(), "files": list(FILES["scales"])},
        "quats": {"files": list(FILES["quats"])},
        "sh0": {"codebook": sh0_book.tolist(), "files": list(FILES["sh0"])},
    }
    degree = scene.sh_degree
    if degree > 0 and n > 0:
        coeffs = SH_COEFFS[degree]
        vectors = p["shN"].reshape(n, coeffs * 3)
        if n <= palette_size:
            centroids, labels = vectors, np.arange(n)
        else:
            centroids, labels = kmeans(vectors, palette_size, iterations, seed)
        book = kmeans_1d(centroids.reshape(-1))
        k = len(centroids)
        rows = math.ceil(k / PALETTE_ROW)
        grid = np.zeros((rows * PALETTE_ROW, coeffs, 3), np.uint8)
        grid[:k] = nearest_1d(book, centroids.reshape(k, coeffs, 3))
        files["shN_centroids.webp"] = _encode_webp(grid.reshape(rows, PALETTE_ROW * coeffs, 3), "RGB")
        label_px = np.stack([labels & 0xFF, labels >> 8, np.zeros_like(labels)], axis=1).astype(np.uint8)
        files["shN_labels.webp"] = webp(label_px, "RGB")
        meta["shN"] = {"count": k, "bands": degree, "codebook": book.tolist(), "files": list(FILES["shN"])}
    files["meta.json"] = json.dumps(meta).encode("utf-8")
    return files


def _encode_webp(pixels: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="WEBP", lossless=True, exact=True, quality=100, method=4)
    return buffer.getvalue()


def pack_quats(quats: np.ndarray) -> np.ndarray:
    """Quaternions [N, 4] (w, x, y, z) -> quats.webp pixels [N, 4] uint8 (see the module docstring)."""
    q = quats / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-300)
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(len(q))
    q = np.where(q[rows, largest][:, None] < 0, -q, q)
    small = q[rows[:, None], QUAT_SLOTS[largest]]
    out = np.empty((len(q), 4), np.uint8)
    out[:, :3] = np.clip(np.round((small * math.sqrt(2.0) * 0.5 + 0.5) * 255.0), 0, 255)
    out[:, 3] = 252 + largest
    return out


def kmeans_1d(values: np.ndarray, k: int = 256, iterations: int = 12) -> np.ndarray:
    """A sorted codebook [k] for scalar `values`: Lloyd's algorithm from quantiles with the first and last
    entry held at the minimum and maximum (plain k-means leaves the sparse tails far from any entry); exact
    for <= k distinct values."""
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size == 0:
        return np.zeros(k)
    unique = np.unique(values)
    if len(unique) <= k:
        return np.concatenate([unique, np.full(k - len(unique), unique[-1])])
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        labels = nearest_1d(centres, values)
        counts = np.bincount(labels, minlength=k)
        sums = np.bincount(labels, weights=values, minlength=k)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        centres[0], centres[-1] = unique[0], unique[-1]  # pinned ends: the extremes stay representable
        centres.sort()
    return centres


def nearest_1d(book: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of the sorted `book` for every value (same shape as `values`)."""
    mids = (book[1:] + book[:-1]) / 2
    return np.searchsorted(mids, values).astype(np.int64)


def kmeans(vectors: np.ndarray, k: int, iterations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k, D], labels [N]) by Lloyd's algorithm from k distinct random rows, fitted on at most
    KMEANS_FIT_ROWS sampled rows (bounds the time on large scenes), then every row labelled; float32
    distances in row blocks so the [rows, k] distance matrix stays near 64 MB."""
    rng = np.random.default_rng(seed)
    everything = vectors.astype(np.float32)
    fit = everything if len(everything) <= KMEANS_FIT_ROWS else everything[rng.choice(len(everything), KMEANS_FIT_ROWS, replace=False)]
    centroids = fit[rng.choice(len(fit), size=k, replace=False)].copy()
    for _ in range(max(1, iterations)):
        labels = _nearest(fit, centroids)
        counts = np.bincount(labels, minlength=k)
        sums = np.stack([np.bincount(labels, weights=fit[:, d], minlength=k) for d in range(fit.shape[1])], 1)
        centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids).astype(np.float32)
    return centroids.astype(np.float64), _nearest(everything, centroids)


def _nearest(data: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid [N] for every row of `data` [N, D]."""
    labels = np.zeros(len(data), np.int64)
    norms = (centroids**2).sum(axis=1)
    block = max(1, (16 << 20) // len(centroids))
    for a in range(0, len(data), block):
        labels[a : a + block] = np.argmin(norms[None, :] - 2.0 * data[a : a + block] @ centroids.T, axis=1)
    return labels
