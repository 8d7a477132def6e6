"""antimatter15 .splat: a headerless array of 32-byte records, one per Gaussian, little-endian.

    position   3 x float32
    scale      3 x float32   linear standard deviations (exp of our log-scales)
    rgba       4 x uint8     rgb = clamp(C0 * sh0 + 0.5, 0, 1) * 255, a = sigmoid(opacity) * 255
    rotation   4 x uint8     (w, x, y, z) of the normalized quaternion, q * 128 + 128 clamped to 0..255

The format has no view-dependent colour: the writer keeps only the degree-0 term and drops shN, and colours
outside [0, 1] are clamped. Quantization: colour and opacity to 1/255, rotation components to 1/128.
Opacity bytes 0 and 255 would decode to logits of -inf/+inf; we clamp the fraction to
[0.25/255, 254.75/255] so the scene stays finite and re-encoding gives back the same byte. The writer keeps
the scene's order (the web viewer sorts on its own).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..scene import SH_C0, GaussianScene, SceneError
from .errors import FormatError
from .files import check_readable

RECORD = np.dtype([("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rotation", "u1", (4,))])
assert RECORD.itemsize == 32
ALPHA_CLAMP = (0.25 / 255.0, 254.75 / 255.0)


def read_splat(path: str | os.PathLike) -> GaussianScene:
    """Load a .splat file as a float32 CPU scene of SH degree 0; FormatError on malformed content."""
    path = check_readable(path)
    size = path.stat().st_size
    if size % RECORD.itemsize:
        raise FormatError(
            path,
            f"truncated or not a .splat file: size {size} bytes is not a multiple of {RECORD.itemsize} "
            f"({size // RECORD.itemsize} whole records + {size % RECORD.itemsize} stray bytes)",
        )
    records = np.fromfile(path, dtype=RECORD)
    means = records["position"].astype(np.float32)
    linear = records["scale"].astype(np.float64)
    bad = ~(linear > 0) | ~np.isfinite(linear)
    if bad.any():
        first = int(np.flatnonzero(bad.any(axis=1))[0])
        raise FormatError(
            path,
            f"{int(bad.any(axis=1).sum())} record(s) have a non-positive or non-finite scale "
            f"(first at index {first}: {linear[first].tolist()})",
        )
    scales = np.log(linear)
    rgba = records["rgba"].astype(np.float64) / 255.0
    sh0 = (rgba[:, :3] - 0.5) / SH_C0
    alpha = np.clip(rgba[:, 3], *ALPHA_CLAMP)
    opacities = np.log(alpha) - np.log1p(-alpha)
    quats = (records["rotation"].astype(np.float64) - 128.0) / 128.0
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.where(norm > 0, quats / np.maximum(norm, 1e-12), np.array([1.0, 0.0, 0.0, 0.0]))
    tensors = dict(means=means, quats=quats, scales=scales, opacities=opacities, sh0=sh0[:, None, :])
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in tensors.items()}
    try:
        return GaussianScene.create(**tensors)
    except SceneError as exc:
        raise FormatError(path, f"invalid Gaussian values: {exc}") from None


def write_splat(scene: GaussianScene, path: str | os.PathLike) -> None:
    """Write `scene` as .splat (degree-0 colour only: higher SH coefficients are dropped, see module doc)."""
    scene = scene.detach().to("cpu")
    records = np.empty(len(scene), dtype=RECORD)
    records["position"] = scene.means.float().numpy()
    linear = torch.exp(scene.scales.double()).numpy()
    if not (linear <= np.finfo(np.float32).max).all():
        raise FormatError(Path(path), "cannot write .splat: a scale overflows float32 (log-scale too large)")
    records["scale"] = linear
    rgb = np.clip(scene.sh0[:, 0, :].double().numpy() * SH_C0 + 0.5, 0.0, 1.0)
    alpha = torch.sigmoid(scene.opacities.double()).numpy()
    records["rgba"][:, :3] = np.round(rgb * 255.0)
    records["rgba"][:, 3] = np.round(alpha * 255.0)
    q = scene.quats.double().numpy()
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    records["rotation"] = np.clip(np.round(q * 128.0 + 128.0), 0, 255)
    records.tofile(path)
