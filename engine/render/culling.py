"""Which Gaussians can show in a view: a conservative screen-space test that runs before any projection.

A real capture holds millions of Gaussians; a view of a part sees a fraction of them, and a pick, a brush or a
lifting window sees a few pixels. Projecting, shading and sorting the rest is wasted work, so every CPU path
(engine/render/cpu.py, engine/masks/compositing.py) first asks `reaching(...)` which rows can touch a window
of pixels, and works on those rows only.

The test never drops a Gaussian that the projection (engine/render/projection.py, gsplat's rules) would keep:
for the camera-space centre t, the perspective Jacobian J (with gsplat's 1.3x field-of-view clamp) and the
largest scale s, the projected covariance's diagonal obeys cov2d_xx = j_x Σ j_xᵀ <= |j_x|² s², so the
projection's radius ceil(extend * sqrt(cov2d_xx + eps2d)) is at most the bound used here (plus a pixel of
slack for rounding). Rows behind the near plane or below the alpha threshold are dropped exactly as the
projection drops them. Hence a render of the kept rows draws the same picture as a render of all rows
(tests/render/test_culling.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit
from torch import Tensor

from ..camera import Cameras
from ..scene import PARAM_NAMES, GaussianScene
from ._cpu_kernels import TILE_SIZE
from .projection import ALPHA_THRESHOLD, EPS2D, FAR_PLANE, MAX_EXTEND, NEAR_PLANE

# A render gathers the kept rows only when at most this share is kept: its kernels already skip culled rows
# cheaply after projecting them, so gathering most of a big scene (all its SH rows) costs more than it saves
# (bench/scale.py: 24 SAM views at 1.2M keeping ~70% were slower gathered).
WORTH_GATHERING = 0.5
SLACK_PX = 2.0  # pixels added to every bound: ceil() and float32 rounding in the projection


@njit(cache=True, nogil=True, inline="always")
def _footprint(n, means, log_scales, opacity_logits):
    """(kept, m0, m1, m2, extend, s^2) of row n: its centre, the projection's extend (sigmas out to the alpha
    threshold) and its largest scale squared; kept is False below the alpha threshold (the projection drops it)."""
    logit = np.float64(opacity_logits[n])
    if logit < math.log(ALPHA_THRESHOLD / (1.0 - ALPHA_THRESHOLD)) - 1e-6:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0
    o = 1.0 / (1.0 + math.exp(-logit))
    extend = min(MAX_EXTEND, math.sqrt(2.0 * math.log(max(o / ALPHA_THRESHOLD, 1.0))))
    s = math.exp(max(np.float64(log_scales[n, 0]), np.float64(log_scales[n, 1]), np.float64(log_scales[n, 2])))
    return True, np.float64(means[n, 0]), np.float64(means[n, 1]), np.float64(means[n, 2]), extend, s * s


@njit(cache=True, nogil=True)
def _camera_limits(Ks, width, height):
    """[C, 4] each camera's (lxp, lxn, lyp, lyn): the tangent limits of gsplat's 1.3x field-of-view clamp,
    worked out once per camera instead of once per (row, camera)."""
    out = np.empty((Ks.shape[0], 4))
    for c in range(Ks.shape[0]):
        fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
        out[c, 0] = (width - cx) / fx + 0.15 * width / fx
        out[c, 1] = cx / fx + 0.15 * width / fx
        out[c, 2] = (height - cy) / fy + 0.15 * height / fy
        out[c, 3] = cy / fy + 0.15 * height / fy
    return out


@njit(cache=True, nogil=True, inline="always")
def _bound(m0, m1, m2, extend, s2, v, K, limits, far):
    """(in depth range, z, u, w, rx, ry): the camera-space depth z of a Gaussian (see `_footprint`) seen by camera
    (v [4, 4], K [3, 3], its `_camera_limits`) and its footprint bound, the pixel box (u -+ rx, w -+ ry) (open); False behind the
    near plane (the projection drops it there) or deeper than `far` (nothing else worked out)."""
    z = v[2, 0] * m0 + v[2, 1] * m1 + v[2, 2] * m2 + v[2, 3]
    if z < NEAR_PLANE * 0.999 or z > far:
        return False, z, 0.0, 0.0, 0.0, 0.0
    x = v[0, 0] * m0 + v[0, 1] * m1 + v[0, 2] * m2 + v[0, 3]
    y = v[1, 0] * m0 + v[1, 1] * m1 + v[1, 2] * m2 + v[1, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tx = min(limits[0], max(-limits[1], x / z))
    ty = min(limits[2], max(-limits[3], y / z))
    jx2 = (fx / z) ** 2 * (1.0 + tx * tx)  # |row 0 of J|^2
    jy2 = (fy / z) ** 2 * (1.0 + ty * ty)
    rx = extend * math.sqrt(jx2 * s2 + EPS2D) * 1.001 + SLACK_PX
    ry = extend * math.sqrt(jy2 * s2 + EPS2D) * 1.001 + SLACK_PX
    return True, z, fx * x / z + cx, fy * y / z + cy, rx, ry


@njit(cache=True, nogil=True, inline="always")
def _reaches(m0, m1, m2, extend, s2, v, K, limits, window):
    """Whether the footprint bound of a Gaussian (see `_bound`) can touch the pixel box window = (x0, y0, x1, y1)."""
    ok, z, u, w, rx, ry = _bound(m0, m1, m2, extend, s2, v, K, limits, FAR_PLANE)
    return ok and u + rx > window[0] and u - rx < window[2] and w + ry > window[1] and w - ry < window[3]


@njit(cache=True, nogil=True, inline="always")
def _tile_span(centre, reach, num_tiles):
    """The tiles [t0, t1) a footprint bound centre -+ reach (open) can touch, clipped to [0, num_tiles)."""
    t0 = max(-1.0, min(num_tiles + 1.0, math.floor((centre - reach) / TILE_SIZE)))
    t1 = max(-1.0, min(num_tiles + 1.0, math.floor((centre + reach) / TILE_SIZE) + 1.0))
    return max(0, int(t0)), min(num_tiles, int(t1))


@njit(cache=True, nogil=True)
def _reach_tiles_kernel(lo, hi, means, log_scales, opacity_logits, viewmats, Ks, width, height, fars, out):
    """out[n] bit c set for rows lo..hi-1 whose footprint bound can touch a tile (y, x) of camera c with its
    centre no deeper than fars[c, y, x] (C <= 64)."""
    limits = _camera_limits(Ks, width, height)
    deepest = np.empty(fars.shape[0])
    for c in range(fars.shape[0]):
        deepest[c] = fars[c].max()  # most rows lie deeper than every tile's far: they end at their depth
    for n in range(lo, hi):
        kept, m0, m1, m2, extend, s2 = _footprint(n, means, log_scales, opacity_logits)
        if not kept:
            continue
        bits = np.uint64(0)
        for c in range(viewmats.shape[0]):
            ok, z, u, w, rx, ry = _bound(m0, m1, m2, extend, s2, viewmats[c], Ks[c], limits[c], deepest[c])
            if not ok:
                continue
            x0, x1 = _tile_span(u, rx, fars.shape[2])
            y0, y1 = _tile_span(w, ry, fars.shape[1])
            found = False
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    if z <= fars[c, ty, tx]:
                        found = True
                        break
                if found:
                    bits |= np.uint64(1) << np.uint64(c)
                    break
        out[n] = bits


@njit(cache=True, nogil=True)
def _reach_kernel(lo, hi, means, log_scales, opacity_logits, viewmats, Ks, width, height, windows, out):
    """out[n] = 1 for rows lo..hi-1 whose footprint can reach window c = (x0, y0, x1, y1) of some camera c."""
    limits = _camera_limits(Ks, width, height)
    for n in range(lo, hi):
        kept, m0, m1, m2, extend, s2 = _footprint(n, means, log_scales, opacity_logits)
        if not kept:
            continue
        for c in range(viewmats.shape[0]):
            if _reaches(m0, m1, m2, extend, s2, viewmats[c], Ks[c], limits[c], windows[c]):
                out[n] = 1
                break


@njit(cache=True, nogil=True)
def _reach_views_kernel(lo, hi, means, log_scales, opacity_logits, viewmats, Ks, width, height, windows, out):
    """out[n] bit c set for rows lo..hi-1 whose footprint can reach window c of camera c (C <= 64)."""
    limits = _camera_limits(Ks, width, height)
    for n in range(lo, hi):
        kept, m0, m1, m2, extend, s2 = _footprint(n, means, log_scales, opacity_logits)
        if not kept:
            continue
        bits = np.uint64(0)
        for c in range(viewmats.shape[0]):
            if _reaches(m0, m1, m2, extend, s2, viewmats[c], Ks[c], limits[c], windows[c]):
                bits |= np.uint64(1) << np.uint64(c)
        out[n] = bits


@njit(cache=True)
def _rows_of_bits(bits, num_cameras):
    """(starts [C + 1], rows): the rows with bit c set are rows[starts[c]:starts[c + 1]], in increasing order."""
    counts = np.zeros(num_cameras + 1, np.int64)
    for n in range(bits.shape[0]):
        b = bits[n]
        for c in range(num_cameras):
            if (b >> np.uint64(c)) & np.uint64(1):
                counts[c + 1] += 1
    starts = np.cumsum(counts)
    fill = starts[:-1].copy()
    rows = np.empty(starts[-1], np.int64)
    for n in range(bits.shape[0]):
        b = bits[n]
        for c in range(num_cameras):
            if (b >> np.uint64(c)) & np.uint64(1):
                rows[fill[c]] = n
                fill[c] += 1
    return starts, rows


def reaching(
    means: Tensor,  # [N, 3]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    cameras: Cameras,
    windows: Tensor | None = None,  # [C, 4] pixel boxes (x0, y0, x1, y1) per camera; None: the whole image
) -> Tensor:
    """[N] bool: the rows whose projected footprint can touch the window of at least one camera (see the
    module docstring: a superset of what the projection keeps there)."""
    from .cpu import _parallel, _ranges  # the render thread pool (cpu.py imports this module lazily too)

    C, N = len(cameras), means.shape[0]
    if windows is None:
        windows = torch.tensor([[0.0, 0.0, cameras.width, cameras.height]]).expand(C, 4)
    win = np.ascontiguousarray(torch.as_tensor(windows, dtype=torch.float64).reshape(C, 4).numpy())
    args = (_array(means), _array(log_scales), _array(opacity_logits.reshape(N)),
            _array(cameras.viewmats, np.float64), _array(cameras.Ks, np.float64),
            int(cameras.width), int(cameras.height), win)
    out = np.zeros(N, np.uint8)
    if N:
        _parallel(_reach_kernel, [(lo, hi, *args, out) for lo, hi in _ranges(N)])
    return torch.from_numpy(out.view(np.bool_))


def reaching_views(
    means: Tensor,  # [N, 3]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    cameras: Cameras,
    windows: Tensor,  # [C, 4] pixel boxes (x0, y0, x1, y1) per camera
) -> list[Tensor]:
    """[rows [M_c] for each camera c]: the sorted rows that can touch camera c's window — `reaching` for each
    camera alone (the same rows), in one pass over the scene for up to 64 cameras at a time (each row's
    footprint bound is worked out once, not once per camera)."""
    win = np.ascontiguousarray(torch.as_tensor(windows, dtype=torch.float64).reshape(len(cameras), 4).numpy())
    return _rows_per_camera(_reach_views_kernel, means, log_scales, opacity_logits, cameras, win)


def reaching_tiles(
    means: Tensor,  # [N, 3]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    cameras: Cameras,
    fars: np.ndarray,  # [C, tiles_h, tiles_w] camera-space depths (16-px tiles; -inf: none)
) -> list[Tensor]:
    """[rows [M_c] for each camera c]: the sorted rows whose footprint can touch a tile (y, x) of camera c with
    their centre no deeper than fars[c, y, x] (the rows that can sort in front of something known per tile),
    in one pass over the scene per 64 cameras like `reaching_views`."""
    return _rows_per_camera(_reach_tiles_kernel, means, log_scales, opacity_logits, cameras,
                            np.ascontiguousarray(fars, np.float64))


def _rows_per_camera(kernel, means: Tensor, log_scales: Tensor, opacity_logits: Tensor, cameras: Cameras,
                     per_camera: np.ndarray) -> list[Tensor]:
    """Run a per-camera bit kernel (`_reach_views_kernel`'s arguments; per_camera [C, ...]: its windows or
    fars) over all rows, 64 cameras at a time, and split the bits into each camera's sorted rows."""
    from .cpu import _parallel, _ranges  # the render thread pool (cpu.py imports this module lazily too)

    N = means.shape[0]
    arrays = (_array(means), _array(log_scales), _array(opacity_logits.reshape(N)))
    viewmats, Ks = _array(cameras.viewmats, np.float64), _array(cameras.Ks, np.float64)
    out: list[Tensor] = []
    for c0 in range(0, len(cameras), 64):
        c1 = min(len(cameras), c0 + 64)
        bits = np.zeros(N, np.uint64)
        if N:
            args = (*arrays, viewmats[c0:c1], Ks[c0:c1], int(cameras.width), int(cameras.height), per_camera[c0:c1])
            _parallel(kernel, [(lo, hi, *args, bits) for lo, hi in _ranges(N)])
        starts, rows = _rows_of_bits(bits, c1 - c0)
        out += [torch.from_numpy(rows[starts[c]:starts[c + 1]]) for c in range(c1 - c0)]
    return out


def reaching_index(scene, cameras: Cameras, windows: Tensor | None = None,
                   worth: float = WORTH_GATHERING) -> Tensor | None:
    """The sorted rows [M] of `scene` that can show in `cameras` (within `windows`), or None when more than
    `worth` of them can (then the caller keeps the whole scene)."""
    keep = reaching(scene.means, scene.scales, scene.opacities, cameras, windows)
    count = int(keep.sum())
    if count >= len(keep) or count > worth * len(keep):
        return None
    return keep.nonzero().flatten()


def frozen_and_trainable(frozen: GaussianScene, trainable: dict[str, Tensor], cameras: Cameras) -> tuple[GaussianScene, int]:
    """(the scene an edit step renders, F): the frozen rows that can show in `cameras` (F of them, in their
    order), then every trainable row [M] (the differentiable leaves). The render draws the same picture as
    frozen + trainable in full, while the step's gather, projection, shading and backward skip the frozen
    rows out of view; F tells the densifier where the trainable rows start. On a GPU the renderer culls
    itself: the frozen rows are kept whole there."""
    keep = None
    if frozen.device.type == "cpu" and len(frozen):
        keep = reaching_index(frozen, cameras, worth=1.0)  # the alternative, concatenating all, costs more
    if keep is not None:
        frozen = GaussianScene.trusted(**{name: t[keep] for name, t in frozen.items()})
    scene = GaussianScene.trusted(**{name: torch.cat([getattr(frozen, name), trainable[name]])
                                     for name in PARAM_NAMES})
    return scene, len(frozen)


def _array(t: Tensor, dtype=None) -> np.ndarray:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if dtype is None and t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return np.ascontiguousarray(t.numpy(), dtype)
