"""A scene's up axis: names, parsing, a guess from geometry, and turning a scene from one up to another.

Orbit cameras (editing, masks, render/turntable, the viewers) circle around the scene's up axis, so a scene
whose up is wrong is seen lying on its side: SD then edits a sideways picture. The bundled robot is +z up; real
3DGS captures are mostly -y up (COLMAP's first camera looks along +z with y down). engine.io.detect_up picks
the up of a file (see there for the rule); users override it (`--up`, the Scene panel).

An up is a unit 3-vector, written as a tuple of floats; the six axis directions have names: +z, -z, +y, -y, +x,
-x ("z" means "+z").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Up = tuple[float, float, float]

Z_UP: Up = (0.0, 0.0, 1.0)
NEG_Y_UP: Up = (0.0, -1.0, 0.0)
AXIS_NAMES: dict[str, Up] = {
    "+z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0),
    "+y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
    "+x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0),
}  # fmt: skip
CHOICES = ("+z", "-y", "+y", "-z", "+x", "-x")  # in the order a menu offers them (commonest first)


def parse_up(text: str) -> Up:
    """'z', '+z', '-y', ... or three numbers 'x,y,z' (normalised) -> a unit up; ValueError (one line) else."""
    value = str(text).strip().lower().replace(" ", "")
    if value in ("x", "y", "z"):
        value = "+" + value
    if value in AXIS_NAMES:
        return AXIS_NAMES[value]
    try:
        parts = tuple(float(p) for p in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(math.isfinite(p) for p in parts) or sum(p * p for p in parts) == 0.0:
        raise ValueError(f"up axis {text!r}: use +z, -y, +y, -z, +x, -x or three numbers x,y,z (not all zero)")
    return normalize_up(parts)


def normalize_up(up) -> Up:
    """Any non-zero 3-vector as a unit tuple of floats."""
    v = [float(c) for c in up]
    if len(v) != 3:
        raise ValueError(f"an up axis has 3 components, got {len(v)}")
    norm = math.sqrt(sum(c * c for c in v))
    if not norm > 0 or not math.isfinite(norm):
        raise ValueError(f"up axis {tuple(v)} is not a usable direction")
    return tuple(c / norm for c in v)  # type: ignore[return-value]


def format_up(up) -> str:
    """The name of an axis direction ('+z', '-y', ...) or 'x,y,z' with 4 decimals for any other direction."""
    u = normalize_up(up)
    for name, axis in AXIS_NAMES.items():
        if max(abs(a - b) for a, b in zip(u, axis)) < 1e-6:
            return name
    return ",".join(f"{c:.4f}" for c in u)


def rotation_between(src: Up, dst: Up) -> Tensor:
    """The smallest rotation [3, 3] (float64) taking direction `src` to `dst` (Rodrigues' formula). Opposite
    directions turn 180 degrees about the first world axis orthogonal to `src` (x, else y)."""
    a = torch.tensor(normalize_up(src), dtype=torch.float64)
    b = torch.tensor(normalize_up(dst), dtype=torch.float64)
    axis = torch.linalg.cross(a, b)
    s, c = float(axis.norm()), float(a @ b)
    if s < 1e-12:
        if c > 0:
            return torch.eye(3, dtype=torch.float64)
        pick = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
        if abs(float(pick @ a)) > 0.9:
            pick = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        axis = torch.nn.functional.normalize(pick - (pick @ a) * a, dim=0)
        return 2.0 * torch.outer(axis, axis) - torch.eye(3, dtype=torch.float64)
    k = axis / s
    kx = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + s * kx + (1.0 - c) * (kx @ kx)


def up_from_geometry(means: Tensor, quantile: float = 0.02) -> Up:  # means [N, 3]
    """A guess for files whose format has no up convention: the world axis along which the scene is thinnest
    (its 2-98% extent; ground, floors and table tops make captured scenes wider than tall), pointing away from
    the denser side (the ground and floor are at the bottom: the median lies below the middle of that extent).
    An object tall along one axis fools it; the user overrides then."""
    x = means.detach().double().cpu()
    if x.shape[0] < 2:
        return Z_UP
    lo = torch.quantile(x, quantile, dim=0)
    hi = torch.quantile(x, 1.0 - quantile, dim=0)
    extent = hi - lo
    axis = int(torch.argmin(extent))
    median = float(torch.median(x[:, axis]))
    middle = float(lo[axis] + hi[axis]) / 2
    sign = 1.0 if median <= middle else -1.0
    up = [0.0, 0.0, 0.0]
    up[axis] = sign
    return tuple(up)  # type: ignore[return-value]
