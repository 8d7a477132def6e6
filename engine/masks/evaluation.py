"""Measuring lifting accuracy: ground-truth 2D masks from known parts, SAM-like corruptions, 3D IoU.

Used by tests/masks/ and bench/masks.py. The ground-truth masks are rendered from the parts (one-hot features
composited like colours); the corruptions imitate how SAM fails on single views:
- "erode" / "dilate": the border is off by a few pixels;
- "shift": the mask is displaced (a misregistered or stale mask);
- "bleed": the mask spills into the neighbouring part (SAM picked a larger whole);
- "drop": the view gives an empty mask (the click missed, the part is missing);
- "flip": the complement is returned (SAM picked the background);
- "wrong": the whole view's mask is another part's (SAM segmented something else).
`sphere_views` draws test views the way a user's capture would not be tuned for: from the whole sphere
(below included), at varied distances, aims and resolutions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..camera import Cameras, framing_radius, intrinsics_from_fov, look_at, orbit_cameras
from ..scene import GaussianScene, rgb_to_sh0
from .compositing import ViewWeights

CORRUPTIONS = ("erode", "dilate", "shift", "bleed", "drop", "flip", "wrong")


# ---------------------------------------------------------------------------------------------------- scenes
def _quat_z_to(normals: Tensor) -> Tensor:
    """Quaternions (w, x, y, z) [N, 4] rotating +z onto unit `normals [N, 3]`."""
    n = F.normalize(normals, dim=-1)
    q = torch.stack([1.0 + n[:, 2], -n[:, 1], n[:, 0], torch.zeros_like(n[:, 0])], dim=-1)
    flip = n[:, 2] < -0.999999
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return F.normalize(q, dim=-1)


# (name, centre, radii) of the toy figure's ellipsoid parts, z up.
TOY_PARTS = (
    ("base", (0.0, 0.0, -0.75), (0.6, 0.6, 0.12)),
    ("body", (0.0, 0.0, -0.12), (0.32, 0.28, 0.5)),
    ("head", (0.0, 0.0, 0.55), (0.22, 0.22, 0.22)),
    ("arm_left", (0.48, 0.0, 0.05), (0.26, 0.08, 0.08)),
    ("arm_right", (-0.48, 0.0, 0.05), (0.26, 0.08, 0.08)),
)


def toy_parts_scene(
    num: int = 3000, *, interior_fraction: float = 0.15, colour_noise: float = 0.08, seed: int = 0
) -> tuple[GaussianScene, Tensor, list[str]]:
    """A small figure of 5 touching ellipsoid parts: surface discs plus hidden interior Gaussians.

    Returns (scene, part_ids [N] long, part names). Surface points inside another part are dropped, as in
    a real capture. Stands in for the default scene in fast tests.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([p[1] for p in TOY_PARTS])
    radii = torch.tensor([p[2] for p in TOY_PARTS])
    areas = torch.tensor([_ellipsoid_area(r) for r in radii.tolist()])
    n_surface = int(num * (1 - interior_fraction))
    means_l, normals_l, ids_l, scale_l = [], [], [], []
    for k in range(len(TOY_PARTS)):
        share = int(math.ceil(n_surface * float(areas[k] / areas.sum()) * 1.6))  # oversample, some are culled
        u = F.normalize(torch.randn(share, 3, generator=g), dim=-1)
        p = centres[k] + u * radii[k]
        normal = F.normalize(u / radii[k], dim=-1)
        others = [j for j in range(len(TOY_PARTS)) if j != k]
        inside_other = torch.stack([(((p - centres[j]) / radii[j]) ** 2).sum(-1) < 1.0 for j in others]).any(0)
        p, normal = p[~inside_other], normal[~inside_other]
        spacing = math.sqrt(float(areas[k]) / max(1.0, share / 1.6))
        means_l.append(p)
        normals_l.append(normal)
        ids_l.append(torch.full((len(p),), k))
        scale_l.append(torch.full((len(p),), spacing))
    means, normals = torch.cat(means_l), torch.cat(normals_l)
    ids, spacing = torch.cat(ids_l), torch.cat(scale_l)
    keep = torch.randperm(len(means), generator=g)[:n_surface]
    means, normals, ids, spacing = means[keep], normals[keep], ids[keep], spacing[keep]
    scales = torch.stack([spacing * 0.9, spacing * 0.9, spacing * 0.15], dim=-1)
    quats = _quat_z_to(normals)

    n_inner = num - len(means)
    vol = radii.prod(-1)
    k_in = torch.multinomial(vol / vol.sum(), n_inner, replacement=True, generator=g)
    u = torch.randn(n_inner, 3, generator=g)
    u = F.normalize(u, dim=-1) * torch.rand(n_inner, 1, generator=g) ** (1 / 3) * 0.85
    inner = centres[k_in] + u * radii[k_in]
    inner_scales = (0.35 * radii[k_in].min(-1).values)[:, None].expand(-1, 3) * 0.4

    means = torch.cat([means, inner])
    ids = torch.cat([ids, k_in])
    scales = torch.cat([scales, inner_scales])
    quats = torch.cat([quats, torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(n_inner, 4)])
    palette = torch.tensor([[0.55, 0.4, 0.3], [0.8, 0.2, 0.2], [0.95, 0.85, 0.7], [0.2, 0.5, 0.9], [0.2, 0.8, 0.3]])
    rgb = (palette[ids] + colour_noise * torch.randn(len(ids), 3, generator=g)).clamp(0, 1)
    scene = GaussianScene.create(
        means=means.float(),
        quats=quats.float(),
        scales=torch.log(scales).float(),
        opacities=torch.logit(torch.full((len(ids),), 0.9)),
        sh0=rgb_to_sh0(rgb).float(),
    )
    return scene, ids.long(), [p[0] for p in TOY_PARTS]


def _ellipsoid_area(r: list[float]) -> float:
    """Knud Thomsen's approximation of an ellipsoid's surface area."""
    a, b, c = r
    p = 1.6075
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


def orbit_views(
    scene: GaussianScene, num: int, *, width: int, height: int, elevations=(-15.0, 20.0, 50.0), fov_y_deg=45.0
) -> Cameras:
    """`num` cameras spread over a few elevation rings around the scene, framing its bounding box."""
    lo, hi = scene.bounding_box(quantile=0.01)
    centre = (lo + hi) / 2
    radius = framing_radius(float((hi - lo).norm() / 2), fov_y_deg, margin=1.05)
    az, el = [], []
    for i in range(num):
        ring = i % len(elevations)
        az.append(360.0 * i / num + 17.0 * ring)
        el.append(elevations[ring])
    return orbit_cameras(centre, radius, az, el, width=width, height=height, fov_y_deg=fov_y_deg)


def sphere_views(
    scene: GaussianScene,
    num: int,
    *,
    sizes: tuple[int, ...] = (128, 192, 256),
    distance: tuple[float, float] = (0.75, 1.6),
    fov_y_deg: tuple[float, float] = (35.0, 60.0),
    aim_jitter: float = 0.15,
    up=(0.0, 0.0, 1.0),
    seed: int = 0,
) -> list[Cameras]:
    """`num` random views grouped by image size (square, drawn from `sizes`): directions uniform over the
    whole sphere (below the object included), distance a random multiple of the framing radius (below 1
    the object is cropped), field of view random in `fov_y_deg`, aim off-centre by up to `aim_jitter` of the
    object's half-extent. One `Cameras` per size that was drawn, in `sizes` order."""
    rng = np.random.default_rng(seed)
    lo, hi = scene.bounding_box(quantile=0.01)
    centre, half = ((lo + hi) / 2).double(), float((hi - lo).norm() / 2)
    direction = rng.normal(size=(num, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    fov = rng.uniform(*fov_y_deg, size=num)
    radius = np.array([framing_radius(half, f, margin=1.0) for f in fov]) * rng.uniform(*distance, size=num)
    target = centre.numpy() + aim_jitter * half * rng.uniform(-1, 1, size=(num, 3))
    eyes = target + radius[:, None] * direction
    size = rng.choice(np.asarray(sizes), size=num)
    out = []
    for s in sizes:
        pick = np.nonzero(size == s)[0]
        if len(pick) == 0:
            continue
        viewmats = look_at(torch.from_numpy(eyes[pick]), torch.from_numpy(target[pick]), up)
        Ks = torch.stack([intrinsics_from_fov(int(s), int(s), float(fov[i])) for i in pick])
        out.append(Cameras(viewmats, Ks, int(s), int(s)))
    return out


# ---------------------------------------------------------------------------------------------------- masks
def ground_truth_masks(view_weights: ViewWeights, part_ids: Tensor, num_parts: int) -> Tensor:
    """[C, H, W, P] {0, 1}: a pixel belongs to the part with the largest rendered share where alpha > 0.5."""
    onehot = F.one_hot(part_ids.long(), num_parts).float()
    shares = view_weights.render(onehot)
    alpha = view_weights.alpha()[..., None]
    best = shares.argmax(-1)
    masks = F.one_hot(best, num_parts).float() * (alpha > 0.5).float()
    return masks


def _dilate(mask: Tensor, r: int) -> Tensor:  # [H, W] -> [H, W]
    return F.max_pool2d(mask[None, None], 2 * r + 1, stride=1, padding=r)[0, 0]


def _erode(mask: Tensor, r: int) -> Tensor:
    return 1.0 - _dilate(1.0 - mask, r)


def corrupt_masks(
    masks: Tensor,  # [C, H, W, P]
    fraction: float,
    *,
    seed: int = 0,
    kinds: tuple[str, ...] = CORRUPTIONS,
) -> tuple[Tensor, list[int]]:
    """Corrupt round(fraction * C) randomly chosen views: every part mask of a chosen view gets one randomly
    chosen corruption of `kinds`. Returns (corrupted masks, chosen view indices)."""
    out, bad = corrupt_views([masks], fraction, seed=seed, kinds=kinds)
    return out[0], bad


def corrupt_views(
    groups: list[Tensor],  # each [C_i, H_i, W_i, P]
    fraction: float,
    *,
    seed: int = 0,
    kinds: tuple[str, ...] = CORRUPTIONS,
) -> tuple[list[Tensor], list[int]]:
    """`corrupt_masks` over views of several sizes: round(fraction * total views) views are chosen among all
    of them. Returns (corrupted masks per group, chosen indices into the concatenated views)."""
    unknown = [k for k in kinds if k not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption {unknown[0]!r}; choose from {CORRUPTIONS}")
    rng = np.random.default_rng(seed)
    sizes = [int(g.shape[0]) for g in groups]
    total = sum(sizes)
    n_bad = int(round(fraction * total))
    bad = sorted(rng.choice(total, size=n_bad, replace=False).tolist()) if n_bad else []
    outs = [g.clone() for g in groups]
    offsets = np.cumsum([0] + sizes)
    for v in bad:
        gi = int(np.searchsorted(offsets, v, side="right") - 1)
        c = v - int(offsets[gi])
        outs[gi][c] = _corrupt_view(groups[gi][c], kinds, rng)
    return outs, bad


def _corrupt_view(masks: Tensor, kinds: tuple[str, ...], rng: np.random.Generator) -> Tensor:
    """[H, W, P] -> [H, W, P]: each part's mask gets one corruption drawn from `kinds`."""
    H, W, P = masks.shape
    border = max(2, round(0.05 * min(H, W)))
    out = masks.clone()
    for p in range(P):
        kind = kinds[rng.integers(len(kinds))]
        m = masks[:, :, p]
        if kind == "erode":
            out[:, :, p] = _erode(m, border)
        elif kind == "dilate":
            out[:, :, p] = _dilate(m, border)
        elif kind == "shift":
            angle = rng.uniform(0, 2 * math.pi)
            reach = max(2, round(rng.uniform(0.04, 0.1) * min(H, W)))
            out[:, :, p] = _shift(m, round(reach * math.cos(angle)), round(reach * math.sin(angle)))
        elif kind == "drop":
            out[:, :, p] = 0.0
        elif kind == "flip":
            out[:, :, p] = 1.0 - m
        elif kind == "bleed":
            ring = _dilate(m, border) * (1 - m)
            touching = [(float((ring * masks[:, :, q]).sum()), q) for q in range(P) if q != p]
            if touching and max(touching)[0] > 0:
                q = max(touching)[1]
                reach = _dilate(m, max(border, round(0.2 * min(H, W))))
                out[:, :, p] = torch.maximum(m, reach * masks[:, :, q])
            else:
                out[:, :, p] = _dilate(m, border)
        elif kind == "wrong":
            others = [q for q in range(P) if q != p and float(masks[:, :, q].sum()) > 0]
            out[:, :, p] = masks[:, :, others[rng.integers(len(others))]] if others else 1.0 - m
    return out


def _shift(mask: Tensor, dx: int, dy: int) -> Tensor:
    """[H, W] translated by (dx, dy) pixels, zero-filled."""
    H, W = mask.shape
    out = torch.zeros_like(mask)
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[yd, xd] = mask[ys, xs]
    return out


# ---------------------------------------------------------------------------------------------------- scores
def iou(pred: Tensor, truth: Tensor) -> float:
    """Intersection over union of two boolean masks [N] (1.0 when both are empty)."""
    pred, truth = pred.bool(), truth.bool()
    union = int((pred | truth).sum())
    return 1.0 if union == 0 else int((pred & truth).sum()) / union


def part_ious(weights: Tensor, part_ids: Tensor, threshold: float, subset: Tensor | None = None) -> list[float]:
    """IoU per part of `weights [P, N] > threshold` against `part_ids [N]` (optionally over a subset [N])."""
    out = []
    for p in range(weights.shape[0]):
        pred, truth = weights[p] > threshold, part_ids == p
        if subset is not None:
            pred, truth = pred[subset], truth[subset]
        out.append(iou(pred, truth))
    return out

