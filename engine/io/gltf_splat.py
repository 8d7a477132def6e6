"""Gaussian splats in glTF (KHR_gaussian_splatting), as splat-transform writes them in .glb: read only.

One primitive (mode 0, points) whose float attributes are per-Gaussian parameters:

    POSITION                                   positions
    KHR_gaussian_splatting:ROTATION            quaternion (x, y, z, w), not necessarily normalized
    KHR_gaussian_splatting:SCALE               linear standard deviations (we store log)
    KHR_gaussian_splatting:OPACITY             opacity in [0, 1] (we store the logit, clamped at 1e-6)
    KHR_gaussian_splatting:SH_DEGREE_l_COEF_k  SH coefficients (RGB) of degree l, index k (COLOR_0 is a
                                               display colour and is ignored when SH degree 0 is present)

glTF is +y up; splat-transform turns 3DGS .ply data (our frame) 180 degrees about z on the way in (checked
against its output: positions (-x, -y, z), quaternions r * q with r the half turn, SH odd in x, y negated).
The reader applies the same half turn (its own inverse), so a .ply -> .glb -> here round trip is exact.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..scene import GaussianScene, SceneError
from .errors import FormatError
from .files import check_readable

PREFIX = "KHR_gaussian_splatting:"
COMPONENTS = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}
OPACITY_EPS = 1e-6
# Sign of each SH coefficient (degree 1..3, index 0..2l) under (x, y, z) -> (-x, -y, z).
SH_FLIP = np.array([-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1], np.float64)


def is_gaussian_gltf(path: Path) -> bool:
    """True when a .glb/.gltf declares KHR_gaussian_splatting (cheap: reads the JSON part only)."""
    try:
        document, _ = _document(path)
    except FormatError:
        return False
    used = document.get("extensionsUsed") if isinstance(document, dict) else None
    return isinstance(used, list) and "KHR_gaussian_splatting" in used


def read_gltf_splat(path: str | os.PathLike) -> GaussianScene:
    """Load the Gaussians of a KHR_gaussian_splatting .glb/.gltf as a float32 CPU scene (our frame)."""
    path = check_readable(path)
    document, binary = _document(path)
    try:
        primitive = next(p for m in document.get("meshes", []) for p in m.get("primitives", [])
                         if "KHR_gaussian_splatting" in (p.get("extensions") or {}))  # fmt: skip
        attributes = primitive["attributes"]
    except (StopIteration, KeyError, TypeError, AttributeError):
        raise FormatError(path, "glTF declares KHR_gaussian_splatting but no primitive uses it") from None

    def attribute(name: str, width: int, count: int | None) -> np.ndarray:
        if name not in attributes:
            raise FormatError(path, f"Gaussian glTF has no '{name}' attribute")
        return _accessor(path, document, binary, attributes[name], width, count)

    means = attribute("POSITION", 3, None)
    n = len(means)
    xyzw = attribute(PREFIX + "ROTATION", 4, n)
    linear = attribute(PREFIX + "SCALE", 3, n)
    alpha = attribute(PREFIX + "OPACITY", 1, n)[:, 0]
    sh0 = attribute(PREFIX + "SH_DEGREE_0_COEF_0", 3, n)
    degree = 0
    while degree < 3 and f"{PREFIX}SH_DEGREE_{degree + 1}_COEF_0" in attributes:
        degree += 1
    shN = np.zeros((n, (degree + 1) ** 2 - 1, 3))
    k = 0
    for level in range(1, degree + 1):
        for index in range(2 * level + 1):
            shN[:, k] = attribute(f"{PREFIX}SH_DEGREE_{level}_COEF_{index}", 3, n)
            k += 1
    # the half turn about z back to our frame (its own inverse)
    means = means * np.array([-1.0, -1.0, 1.0])
    x, y, z, w = xyzw.T
    quats = np.stack([-z, -y, x, w], axis=1)  # r * q, r = (w 0, x 0, y 0, z 1), in (w, x, y, z)
    shN = shN * SH_FLIP[: shN.shape[1], None]
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = np.log(np.where(linear > 0, linear, np.nan))
    if np.isnan(scales).any():
        raise FormatError(path, f"{int(np.isnan(scales).any(axis=1).sum())} Gaussian(s) have a scale <= 0 or NaN")
    alpha = np.clip(alpha, OPACITY_EPS, 1 - OPACITY_EPS)
    tensors = dict(means=means, quats=quats, scales=scales, opacities=np.log(alpha) - np.log1p(-alpha),
                   sh0=sh0[:, None, :], shN=shN)  # fmt: skip
    tensors = {key: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for key, v in tensors.items()}
    try:
        return GaussianScene(**tensors)
    except SceneError as exc:
        raise FormatError(path, f"invalid Gaussian values: {exc}") from None


def _document(path: Path) -> tuple[dict, bytes | None]:
    """(glTF JSON, the .glb binary chunk or None)."""
    data = path.read_bytes()
    if data[:4] == b"glTF":
        if len(data) < 20:
            raise FormatError(path, "truncated .glb header")
        length, kind = struct.unpack_from("<II", data, 12)
        if kind != 0x4E4F534A or 20 + length > len(data):
            raise FormatError(path, "corrupt .glb: bad JSON chunk")
        raw, rest = data[20 : 20 + length], data[20 + length :]
        binary = None
        if len(rest) >= 8:
            size, kind = struct.unpack_from("<II", rest, 0)
            if kind == 0x004E4942:
                binary = rest[8 : 8 + size]
    else:
        raw, binary = data, None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FormatError(path, "glTF JSON does not parse") from None
    if not isinstance(document, dict):
        raise FormatError(path, "glTF JSON is not an object")
    return document, binary


def _accessor(path: Path, document: dict, binary: bytes | None, index, width: int, count: int | None) -> np.ndarray:
    """Accessor `index` as float64 [count, width]; FormatError for anything but tightly packed floats."""
    try:
        accessor = document["accessors"][index]
        view = document["bufferViews"][accessor["bufferView"]]
        buffer = document["buffers"][view.get("buffer", 0)]
        n = int(accessor["count"])
        ok = accessor.get("componentType") == 5126 and COMPONENTS.get(accessor.get("type")) == width
        stride = int(view.get("byteStride", 0) or 0)
        start = int(view.get("byteOffset", 0)) + int(accessor.get("byteOffset", 0))
    except (KeyError, IndexError, TypeError, ValueError):
        raise FormatError(path, f"corrupt glTF: accessor {index!r} is malformed") from None
    if not ok or stride not in (0, 4 * width):
        raise FormatError(path, f"unsupported Gaussian glTF accessor {index}: expected packed float {width}-vectors")
    if count is not None and n != count:
        raise FormatError(path, f"glTF accessor {index} has {n} elements, POSITION has {count}")
    data = _buffer_bytes(path, buffer, binary)
    if n < 0 or start < 0 or start + 4 * width * n > len(data):
        raise FormatError(path, f"truncated glTF: accessor {index} runs past the end of its buffer")
    return np.frombuffer(data, "<f4", n * width, start).reshape(n, width).astype(np.float64)


def _buffer_bytes(path: Path, buffer: dict, binary: bytes | None) -> bytes:
    uri = buffer.get("uri") if isinstance(buffer, dict) else None
    if uri is None:
        if binary is None:
            raise FormatError(path, "glTF buffer has no uri and the file has no binary chunk")
        return binary
    if uri.startswith("data:"):
        try:
            return base64.b64decode(uri.split(",", 1)[1])
        except (IndexError, ValueError):
            raise FormatError(path, "glTF buffer data URI is not base64") from None
    target = path.parent / uri
    if "/" in uri or "\\" in uri or not target.is_file():
        raise FormatError(path, f"glTF buffer file '{uri}' is missing next to the .gltf")
    return target.read_bytes()
