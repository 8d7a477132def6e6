"""Build the bundled default scene: a small toy robot made of Gaussians, with a ground-truth part per Gaussian.

    python -m assets.build_default_scene [--out-dir assets] [--seed 0]

writes default_scene.ply (INRIA 3DGS layout, SH degree 1), default_scene_parts.npy (int32 part id per
Gaussian, same order) and default_scene_parts.json (part names, world up, front direction, seed).

How it is made, so that the result looks clean from every side in any splat viewer:
- every part is a union of simple solids given by exact signed distance functions (rounded boxes, capsules,
  spheres, a torus); world up is +z, the robot stands on z = 0, faces +x and is 1 unit tall;
- the visible surface of the union is sampled evenly: random points in a thin shell around each solid are
  projected onto its surface, points hidden inside another solid are dropped, and a Poisson-disk thinning
  keeps a blue-noise set with a minimum spacing (no clumps, no holes);
- each sample becomes a flat, disc-like Gaussian lying in the surface tangent plane, sized from the distance
  to its neighbours so the discs overlap into a closed skin;
- colour lives in the degree-0 SH term (the part's colour with soft baked light and contact shadows); the
  degree-1 terms add a faint view-dependent sheen (brighter where the surface faces the viewer or mirrors the
  key light).
The builder is deterministic: the same seed gives bit-identical arrays.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

PART_NAMES = ("head", "antenna", "eyes", "body", "scarf", "arms", "legs")
UP = (0.0, 0.0, 1.0)
FRONT = (1.0, 0.0, 0.0)
DEFAULT_SEED = 0
SPACING = 0.0052  # Poisson-disk radius in model units (before scaling to 1 unit tall): sets the count
HEIGHT = 1.0  # final height of the robot

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
CREASE = 0.03  # distance to another solid below which a surface is shaded as a crease
KEY_LIGHT = np.array([0.45, 0.35, 0.82]) / np.linalg.norm([0.45, 0.35, 0.82])


# ---------------------------------------------------------------------------------------------- solids
@dataclass(frozen=True)
class Solid:
    """One primitive: an exact signed distance function plus the part and colour of its surface."""

    part: str
    color: tuple[float, float, float]
    sdf: Callable[[np.ndarray], np.ndarray]  # [M, 3] -> [M]
    lo: tuple[float, float, float]  # bounding box of the solid
    hi: tuple[float, float, float]
    thickness: float  # half-thickness of the sampling shell (below the solid's smallest radius)


def sphere(part: str, color, center, radius: float) -> Solid:
    c = np.asarray(center, dtype=np.float64)

    def sdf(p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p - c, axis=1) - radius

    return Solid(part, color, sdf, tuple(c - radius), tuple(c + radius), min(0.01, 0.4 * radius))


def capsule(part: str, color, a, b, radius: float) -> Solid:
    """A segment a-b thickened by `radius` (arms, legs, antenna stick)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ab = b - a

    def sdf(p: np.ndarray) -> np.ndarray:
        t = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
        return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - radius

    lo = np.minimum(a, b) - radius
    hi = np.maximum(a, b) + radius
    return Solid(part, color, sdf, tuple(lo), tuple(hi), min(0.01, 0.4 * radius))


def round_box(part: str, color, center, half, radius: float) -> Solid:
    """An axis-aligned box with half-extents `half` whose edges are rounded with `radius`."""
    c = np.asarray(center, dtype=np.float64)
    inner = np.asarray(half, dtype=np.float64) - radius

    def sdf(p: np.ndarray) -> np.ndarray:
        q = np.abs(p - c) - inner
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return outside + inside - radius

    h = np.asarray(half, dtype=np.float64)
    return Solid(part, color, sdf, tuple(c - h), tuple(c + h), min(0.01, 0.4 * float(h.min())))


def torus(part: str, color, center, major: float, minor: float) -> Solid:
    """A ring around the vertical axis through `center` (the scarf)."""
    c = np.asarray(center, dtype=np.float64)

    def sdf(p: np.ndarray) -> np.ndarray:
        d = p - c
        ring = np.hypot(d[:, 0], d[:, 1]) - major
        return np.hypot(ring, d[:, 2]) - minor

    ext = np.array([major + minor, major + minor, minor])
    return Solid(part, color, sdf, tuple(c - ext), tuple(c + ext), min(0.01, 0.4 * minor))


def robot_solids() -> list[Solid]:
    """The toy robot: facing +x, width along y, feet on z = 0 (model units, about 1.08 tall)."""
    white, dark = (0.90, 0.90, 0.86), (0.13, 0.13, 0.16)
    steel = (0.62, 0.64, 0.68)
    blue, orange, red = (0.22, 0.42, 0.86), (0.97, 0.58, 0.16), (0.86, 0.15, 0.18)
    cyan, yellow, graphite = (0.30, 0.88, 1.00), (1.00, 0.84, 0.20), (0.30, 0.32, 0.37)
    solids: list[Solid] = []
    for side in (-1.0, 1.0):
        y = 0.10 * side
        solids += [
            round_box("legs", graphite, (0.03, y, 0.035), (0.095, 0.065, 0.035), 0.025),  # foot
            capsule("legs", graphite, (0.0, y, 0.06), (0.0, y, 0.31), 0.055),
            sphere("arms", orange, (0.0, 0.215 * side, 0.585), 0.058),  # shoulder
            capsule("arms", orange, (0.0, 0.23 * side, 0.58), (0.035, 0.29 * side, 0.39), 0.042),
            sphere("arms", orange, (0.04, 0.30 * side, 0.355), 0.055),  # hand
            sphere("eyes", cyan, (0.138, 0.075 * side, 0.845), 0.038),
            capsule("head", steel, (0.0, 0.18 * side, 0.83), (0.0, 0.215 * side, 0.83), 0.04),  # ear bolt
        ]
    solids += [
        round_box("body", blue, (0.0, 0.0, 0.47), (0.15, 0.20, 0.18), 0.05),
        sphere("body", red, (0.148, -0.065, 0.50), 0.022),  # chest buttons
        sphere("body", yellow, (0.148, 0.0, 0.50), 0.022),
        sphere("body", (0.25, 0.80, 0.35), (0.148, 0.065, 0.50), 0.022),
        capsule("body", steel, (0.0, 0.0, 0.62), (0.0, 0.0, 0.72), 0.06),  # neck
        torus("scarf", red, (0.0, 0.0, 0.668), 0.118, 0.044),
        round_box("scarf", red, (0.168, 0.128, 0.56), (0.014, 0.038, 0.09), 0.010),  # scarf tail
        round_box("head", white, (0.0, 0.0, 0.82), (0.15, 0.19, 0.12), 0.06),
        round_box("head", dark, (0.147, 0.0, 0.755), (0.012, 0.06, 0.013), 0.009),  # mouth
        capsule("antenna", steel, (0.0, 0.0, 0.93), (0.0, 0.0, 1.02), 0.012),
        sphere("antenna", yellow, (0.0, 0.0, 1.045), 0.035),
    ]
    return solids


# ---------------------------------------------------------------------------------------------- sampling
def _normals(sdf: Callable[[np.ndarray], np.ndarray], p: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Unit SDF gradients [M, 3] by central differences."""
    grad = np.empty_like(p)
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = eps
        grad[:, axis] = sdf(p + step) - sdf(p - step)
    return grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)


def _surface_candidates(solid: Solid, density: float, rng: np.random.Generator) -> np.ndarray:
    """About `density` points per unit area on the solid's surface [M, 3]: uniform points in a thin shell
    around the surface, projected onto it (exact SDFs land on the surface in one or two steps)."""
    h = solid.thickness
    lo = np.asarray(solid.lo) - h
    hi = np.asarray(solid.hi) + h
    volume = float(np.prod(hi - lo))
    batch = 20000
    kept: list[np.ndarray] = []
    drawn = 0
    needed = None
    while needed is None or sum(len(k) for k in kept) < needed:
        p = lo + rng.random((batch, 3)) * (hi - lo)
        drawn += batch
        kept.append(p[np.abs(solid.sdf(p)) < h])
        if needed is None:
            # the shell holds ~2h of volume per unit of area, so the hit rate measures the surface area
            area = sum(len(k) for k in kept) / drawn * volume / (2 * h)
            needed = int(np.ceil(area * density))
    p = np.concatenate(kept)[:needed]  # the first batch may overshoot a small solid's need
    for _ in range(3):
        p = p - solid.sdf(p)[:, None] * _normals(solid.sdf, p)
    return p


def _poisson_thin(points: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of a maximal subset whose points are all at least `radius` apart (greedy, random order)."""
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    starts = np.searchsorted(both[:, 0], np.arange(len(points) + 1))
    neighbours = both[:, 1]
    alive = np.ones(len(points), dtype=bool)
    keep = []
    for i in rng.permutation(len(points)):
        if alive[i]:
            keep.append(i)
            alive[neighbours[starts[i] : starts[i + 1]]] = False
    return np.sort(np.asarray(keep, dtype=np.int64))


def sample_surface(
    solids: list[Solid], spacing: float, rng: np.random.Generator, oversample: float = 6.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Evenly spaced samples of the union's visible surface.

    Returns points [M, 3], unit normals [M, 3], the index of the solid each point lies on [M] and the
    distance from each point to the nearest *other* solid [M] (small = in a crease, used for contact shade).
    """
    density = oversample / spacing**2
    pts, nrm, owner, gap = [], [], [], []
    for k, solid in enumerate(solids):
        p = _surface_candidates(solid, density, rng)
        d_other = np.full(len(p), np.inf)
        for j, other in enumerate(solids):
            # only points near the other solid's box can be inside it or in a crease with it
            near = np.all((p > np.asarray(other.lo) - CREASE) & (p < np.asarray(other.hi) + CREASE), axis=1)
            if j != k and near.any():
                d_other[near] = np.minimum(d_other[near], other.sdf(p[near]))
        visible = d_other > 0.0
        p = p[visible]
        pts.append(p)
        nrm.append(_normals(solid.sdf, p))
        owner.append(np.full(len(p), k, dtype=np.int64))
        gap.append(d_other[visible])
    pts, nrm, owner, gap = (np.concatenate(a) for a in (pts, nrm, owner, gap))
    keep = _poisson_thin(pts, spacing, rng)
    return pts[keep], nrm[keep], owner[keep], gap[keep]


# ---------------------------------------------------------------------------------------------- Gaussians
def normal_to_quat(normals: np.ndarray) -> np.ndarray:
    """Quaternions [M, 4] (w, x, y, z) of the shortest rotation taking +z to each unit normal."""
    nx, ny, nz = normals.T
    q = np.stack([1.0 + nz, -ny, nx, np.zeros_like(nz)], axis=1)
    flipped = nz < -1.0 + 1e-9  # +z -> -z: any half turn about a horizontal axis
    q[flipped] = (0.0, 1.0, 0.0, 0.0)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _appearance(
    base: np.ndarray, normals: np.ndarray, crease_gap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(sh0 [M, 3], shN [M, 3, 3]): base colour with soft baked light in sh0, a faint sheen in degree 1."""
    lambert = np.clip(normals @ KEY_LIGHT, 0.0, 1.0)
    occlusion = 0.72 + 0.28 * np.clip(crease_gap / CREASE, 0.0, 1.0)
    shade = (0.80 + 0.26 * lambert) * occlusion
    # View-dependent term, linear in the unit direction v from the Gaussian towards the camera:
    # delta(v) = w . v with w = rim * n + spec * reflect(key light); on average v . n ~ 0.6 when visible.
    rim, spec = 0.07, 0.05
    reflected = 2.0 * (normals @ KEY_LIGHT)[:, None] * normals - KEY_LIGHT
    w = rim * normals + spec * reflected
    rgb = np.clip(base * shade[:, None] - 0.6 * rim, 0.0, 1.0)
    sh0 = (rgb - 0.5) / SH_C0
    # gsplat/INRIA evaluate along d = -v: basis (-C1 dy, C1 dz, -C1 dx), so w . v = -w . d needs
    # coefficients (w_y, -w_z, w_x) / C1, the same for every colour channel (a white sheen).
    lin = np.stack([w[:, 1], -w[:, 2], w[:, 0]], axis=1) / SH_C1
    shN = np.repeat(lin[:, :, None], 3, axis=2)
    return sh0, shN


def build_default_scene(seed: int = DEFAULT_SEED, spacing: float = SPACING) -> dict[str, np.ndarray]:
    """The robot as float32 numpy arrays in the raw gsplat layout, plus `part_ids` (int32) and `names`.

    Keys: means [N,3], quats [N,4], scales [N,3] (log), opacities [N] (logit), sh0 [N,1,3], shN [N,3,3],
    part_ids [N], names (tuple of str).
    """
    rng = np.random.default_rng(seed)
    solids = robot_solids()
    points, normals, owner, gap = sample_surface(solids, spacing, rng)

    # Disc size from the local spacing: mean distance to the 4 nearest neighbours.
    dist, _ = cKDTree(points).query(points, k=5)
    local = dist[:, 1:].mean(axis=1)
    tangent = np.clip(0.85 * local, 0.5 * spacing, 2.5 * spacing)
    normal = 0.22 * tangent
    scales = np.log(np.stack([tangent, tangent, normal], axis=1))

    base = np.asarray([solids[k].color for k in range(len(solids))])[owner]
    sh0, shN = _appearance(base, normals, gap)
    part_ids = np.asarray([PART_NAMES.index(solids[k].part) for k in owner], dtype=np.int32)

    # Stand on z = 0, centred on the vertical axis, scaled to HEIGHT.
    lo, hi = points.min(axis=0), points.max(axis=0)
    factor = HEIGHT / (hi[2] - lo[2])
    centre = np.array([0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), lo[2]])
    means = (points - centre) * factor
    scales = scales + np.log(factor)

    opacity = 0.98
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)
    return {
        "means": f32(means),
        "quats": f32(normal_to_quat(normals)),
        "scales": f32(scales),
        "opacities": f32(np.full(len(means), np.log(opacity / (1 - opacity)))),
        "sh0": f32(sh0[:, None, :]),
        "shN": f32(shN),
        "part_ids": part_ids,
        "names": PART_NAMES,
    }


def to_scene(arrays: dict[str, np.ndarray]):
    """The GaussianScene for the arrays of `build_default_scene`."""
    import torch

    from engine.scene import GaussianScene

    return GaussianScene(
        **{k: torch.from_numpy(arrays[k].copy()) for k in ("means", "quats", "scales", "opacities", "sh0", "shN")}
    )


def write_default_scene(out_dir: Path, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Build and write the .ply (its up axis in a header comment), the part-id .npy and the part-name .json."""
    from engine.io.detect_up import save_with_up

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = build_default_scene(seed)
    save_with_up(to_scene(arrays), out_dir / "default_scene.ply", UP)
    np.save(out_dir / "default_scene_parts.npy", arrays["part_ids"])
    meta = {
        "names": list(arrays["names"]),
        "up": list(UP),
        "front": list(FRONT),
        "seed": seed,
        "count": int(len(arrays["means"])),
        "counts": {n: int((arrays["part_ids"] == i).sum()) for i, n in enumerate(arrays["names"])},
        "built_by": "assets/build_default_scene.py",
    }
    (out_dir / "default_scene_parts.json").write_text(json.dumps(meta, indent=2) + "\n")
    return arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    arrays = write_default_scene(args.out_dir, args.seed)
    print(f"wrote {len(arrays['means'])} Gaussians to {args.out_dir}")


if __name__ == "__main__":
    main()
