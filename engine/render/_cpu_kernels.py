"""Compiled (numba) kernels of the CPU rasterizer: tile binning, forward compositing, hand-written backward.

The rules are gsplat 1.5.x's `isect_tiles` + `rasterize_to_pixels` (see engine/render/reference.py for the
readable statement): 16x16 tiles, a Gaussian listed in every tile its radius box touches, per-tile lists
sorted front to back by depth, pixel centres at (j + 0.5, i + 0.5), alpha = min(0.999, o * exp(-sigma)),
skipped when sigma < 0 or alpha < 1/255, and a pixel stops (exclusively) at the first Gaussian that would
bring its transmittance to <= 1e-4.

Speed tricks that do not change the result:
- inside a tile each Gaussian visits only the pixels of its exact alpha >= 1/255 ellipse: per pixel row the
  solution interval of sigma(dx) <= log(o * 255) (computed in float64 with a small slack, then the exact
  per-pixel test decides), instead of all 256 pixels;
- a tile stops walking its list as soon as every pixel is done;
- the backward recomputes alpha from the inputs and walks back to front from each pixel's last contributor,
  so nothing per (pixel, Gaussian) is stored: only the final transmittance and last index per pixel.

Kernels are generic in the float type (float32 for speed, float64 for gradcheck): every constant comes in
the `consts` array and pixel centres in `pxs`/`pys`, so no arithmetic is silently promoted to float64.
Compiled code is cached on disk (cache=True); the first call in a fresh checkout pays the compile.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

TILE_SIZE = 16
# Which fast-math liberties are safe: no NaN/Inf assumptions (we rely on comparisons being honest).
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# Indices into the `consts` array passed to the raster kernels.
C_MAX_ALPHA, C_ALPHA_THR, C_T_EPS, C_ONE, C_HALF, C_ZERO = range(6)
# Relative and absolute slack on log(o / thr) when computing pixel spans: spans must never be too narrow.
SPAN_SLACK = 1e-3
# Per-isect gradient layout: d/d(mean x, mean y, conic a, b, c, opacity), then the F feature channels.
G_MX, G_MY, G_A, G_B, G_C, G_O, G_FEAT = range(7)


@njit(cache=True)
def bin_gaussians(means2d, radii, depths, tiles_w, tiles_h):
    """Tile lists in gsplat's order.

    means2d [C, N, 2], radii [C, N, 2] int32, depths [C, N] -> (offsets [C*TH*TW + 1] int64,
    ids [n_isect] int32 flat indices c * N + n). Tiles are numbered camera-major, row-major; each tile's
    entries are sorted by depth (ties by index, as gsplat's stable radix sort).
    """
    C, N = depths.shape
    tiles_per_cam = tiles_w * tiles_h
    rect = np.zeros((C, N, 4), np.int32)
    counts = np.zeros(C * tiles_per_cam + 1, np.int64)
    ts = np.float32(TILE_SIZE)
    for c in range(C):
        for n in range(N):
            rx = radii[c, n, 0]
            ry = radii[c, n, 1]
            if rx <= 0 or ry <= 0:
                continue
            # gsplat computes the tile range in float32: floor/ceil of (mean / 16 -+ radius / 16)
            tx = np.float32(means2d[c, n, 0]) / ts
            ty = np.float32(means2d[c, n, 1]) / ts
            trx = np.float32(rx) / ts
            try_ = np.float32(ry) / ts
            x0 = min(max(0, int(math.floor(tx - trx))), tiles_w)
            y0 = min(max(0, int(math.floor(ty - try_))), tiles_h)
            x1 = min(max(0, int(math.ceil(tx + trx))), tiles_w)
            y1 = min(max(0, int(math.ceil(ty + try_))), tiles_h)
            rect[c, n, 0] = x0
            rect[c, n, 1] = y0
            rect[c, n, 2] = x1
            rect[c, n, 3] = y1
            for y in range(y0, y1):
                for x in range(x0, x1):
                    counts[c * tiles_per_cam + y * tiles_w + x + 1] += 1
    offsets = np.cumsum(counts)
    ids = np.empty(offsets[-1], np.int32)
    cursor = offsets[:-1].copy()
    for c in range(C):
        order = np.argsort(depths[c].astype(np.float32), kind="mergesort")  # stable, float32 like gsplat
        for n in order:
            x0 = rect[c, n, 0]
            y0 = rect[c, n, 1]
            x1 = rect[c, n, 2]
            y1 = rect[c, n, 3]
            for y in range(y0, y1):
                for x in range(x0, x1):
                    t = c * tiles_per_cam + y * tiles_w + x
                    ids[cursor[t]] = c * N + n
                    cursor[t] += 1
    return offsets, ids


@njit(cache=True, inline="always")
def _row_range(my, a, b, cc, s, y0, y1):
    """Pixel rows [r0, r1) of the tile rows [y0, y1) where sigma <= s can hold (float64 math)."""
    det = a * cc - b * b
    if det <= 0.0 or a <= 0.0 or s < 0.0:
        return y0, y0
    ext = math.sqrt(2.0 * s * a / det)
    r0 = max(y0, int(math.ceil(my - ext - 0.5)))
    r1 = min(y1, int(math.floor(my + ext - 0.5)) + 1)
    return r0, r1


@njit(cache=True, inline="always")
def _col_range(mx, dy, a, b, cc, s, x0, x1):
    """Pixel columns [c0, c1) of tile columns [x0, x1) where sigma(dx, dy) <= s (float64 math)."""
    disc = b * b * dy * dy - a * (cc * dy * dy - 2.0 * s)
    if disc < 0.0:
        return x0, x0
    root = math.sqrt(disc)
    # dx = mean - pixel centre in [(-b dy - root) / a, (-b dy + root) / a]
    dx_lo = (-b * dy - root) / a
    dx_hi = (-b * dy + root) / a
    c0 = max(x0, int(math.ceil(mx - dx_hi - 0.5)))
    c1 = min(x1, int(math.floor(mx - dx_lo - 0.5)) + 1)
    return c0, c1


@njit(cache=True, inline="always")
def _span_threshold(o, thr):
    """log(o / thr) with a little slack: sigma above it means alpha < thr for sure."""
    if o < thr:
        return -1.0
    s = math.log(float(o) / float(thr))
    return s + SPAN_SLACK * (1.0 + s)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def rasterize_fwd(means2d, conics, opac, feats, offsets, ids, width, height, tiles_w, tiles_h, pxs, pys, consts):
    """Front-to-back compositing of every tile.

    means2d [M, 2], conics [M, 3], opac [M], feats [M, F] (M = C * N, flat); offsets/ids from bin_gaussians;
    pxs [W] / pys [H] pixel centres; consts: see C_*. Returns out [C, H, W, F] (no background),
    T_final [C, H, W] (1 - alpha) and last [C, H, W] int32 (list position of the last contributor, -1 none).
    """
    max_alpha = consts[C_MAX_ALPHA]
    thr = consts[C_ALPHA_THR]
    t_eps = consts[C_T_EPS]
    one = consts[C_ONE]
    half = consts[C_HALF]
    zero = consts[C_ZERO]
    F = feats.shape[1]
    tiles_per_cam = tiles_w * tiles_h
    n_tiles = offsets.shape[0] - 1
    C = n_tiles // tiles_per_cam
    out = np.zeros((C, height, width, F), feats.dtype)
    T_final = np.ones((C, height, width), feats.dtype)
    last = np.full((C, height, width), -1, np.int32)
    for t in prange(n_tiles):
        cam = t // tiles_per_cam
        ty = (t % tiles_per_cam) // tiles_w
        tx = t % tiles_w
        x0 = tx * TILE_SIZE
        y0 = ty * TILE_SIZE
        x1 = min(x0 + TILE_SIZE, width)
        y1 = min(y0 + TILE_SIZE, height)
        th = y1 - y0
        tw = x1 - x0
        npix = th * tw
        T = np.ones((th, tw), feats.dtype)
        acc = np.zeros((th, tw, F), feats.dtype)
        lst = np.full((th, tw), -1, np.int32)
        done = np.zeros((th, tw), np.bool_)
        ndone = 0
        for k in range(offsets[t], offsets[t + 1]):
            if ndone >= npix:
                break
            g = ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            a = conics[g, 0]
            b = conics[g, 1]
            cc = conics[g, 2]
            o = opac[g]
            s = _span_threshold(o, thr)
            fa = float(a)
            fb = float(b)
            fc = float(cc)
            r0, r1 = _row_range(float(my), fa, fb, fc, s, y0, y1)
            for i in range(r0, r1):
                dy = my - pys[i]
                c0, c1 = _col_range(float(mx), float(dy), fa, fb, fc, s, x0, x1)
                li = i - y0
                for j in range(c0, c1):
                    lj = j - x0
                    if done[li, lj]:
                        continue
                    dx = mx - pxs[j]
                    sigma = half * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    if sigma < zero:
                        continue
                    alpha = min(max_alpha, o * math.exp(-sigma))
                    if alpha < thr:
                        continue
                    Tc = T[li, lj]
                    nT = Tc * (one - alpha)
                    if nT <= t_eps:
                        done[li, lj] = True
                        ndone += 1
                        continue
                    w = alpha * Tc
                    for f in range(F):
                        acc[li, lj, f] += w * feats[g, f]
                    T[li, lj] = nT
                    lst[li, lj] = k
        for li in range(th):
            for lj in range(tw):
                T_final[cam, y0 + li, x0 + lj] = T[li, lj]
                last[cam, y0 + li, x0 + lj] = lst[li, lj]
                for f in range(F):
                    out[cam, y0 + li, x0 + lj, f] = acc[li, lj, f]
    return out, T_final, last


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def rasterize_bwd(
    means2d, conics, opac, feats, offsets, ids, width, height, tiles_w, tiles_h, pxs, pys, consts,
    T_final, last, v_out, v_alpha,
):
    """Gradients of rasterize_fwd, per intersection: returns grads [n_isect, 6 + F] (layout G_*).

    Walks each tile back to front from the last contributor of any of its pixels, recovering the
    transmittance before each Gaussian by division (T_i = T_{i+1} / (1 - alpha_i), as gsplat does) and the
    colour behind it by accumulation, recomputing alpha from the inputs. v_out [C, H, W, F], v_alpha [C, H, W].
    """
    max_alpha = consts[C_MAX_ALPHA]
    thr = consts[C_ALPHA_THR]
    one = consts[C_ONE]
    half = consts[C_HALF]
    zero = consts[C_ZERO]
    F = feats.shape[1]
    tiles_per_cam = tiles_w * tiles_h
    n_tiles = offsets.shape[0] - 1
    grads = np.empty((ids.shape[0], G_FEAT + F), feats.dtype)
    for t in prange(n_tiles):
        cam = t // tiles_per_cam
        ty = (t % tiles_per_cam) // tiles_w
        tx = t % tiles_w
        x0 = tx * TILE_SIZE
        y0 = ty * TILE_SIZE
        x1 = min(x0 + TILE_SIZE, width)
        y1 = min(y0 + TILE_SIZE, height)
        th = y1 - y0
        tw = x1 - x0
        T = np.empty((th, tw), feats.dtype)
        buf = np.zeros((th, tw, F), feats.dtype)
        kmax = offsets[t] - 1
        for li in range(th):
            for lj in range(tw):
                T[li, lj] = T_final[cam, y0 + li, x0 + lj]
                kmax = max(kmax, last[cam, y0 + li, x0 + lj])
        vf = np.empty(F, feats.dtype)
        for k in range(kmax + 1, offsets[t + 1]):
            for q in range(G_FEAT + F):
                grads[k, q] = zero
        for k in range(kmax, offsets[t] - 1, -1):
            g = ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            a = conics[g, 0]
            b = conics[g, 1]
            cc = conics[g, 2]
            o = opac[g]
            vmx = zero
            vmy = zero
            va = zero
            vb = zero
            vc = zero
            vo = zero
            for f in range(F):
                vf[f] = zero
            s = _span_threshold(o, thr)
            fa = float(a)
            fb = float(b)
            fc = float(cc)
            r0, r1 = _row_range(float(my), fa, fb, fc, s, y0, y1)
            for i in range(r0, r1):
                dy = my - pys[i]
                c0, c1 = _col_range(float(mx), float(dy), fa, fb, fc, s, x0, x1)
                li = i - y0
                for j in range(c0, c1):
                    lj = j - x0
                    py_ = y0 + li
                    px_ = x0 + lj
                    if k > last[cam, py_, px_]:
                        continue
                    dx = mx - pxs[j]
                    sigma = half * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    if sigma < zero:
                        continue
                    vis = math.exp(-sigma)
                    raw = o * vis
                    alpha = min(max_alpha, raw)
                    if alpha < thr:
                        continue
                    ra = one / (one - alpha)
                    Ti = T[li, lj] * ra
                    w = alpha * Ti
                    v_a = v_alpha[cam, py_, px_] * T_final[cam, py_, px_] * ra
                    for f in range(F):
                        vo_f = v_out[cam, py_, px_, f]
                        fv = feats[g, f]
                        vf[f] += w * vo_f
                        v_a += vo_f * (fv * Ti - buf[li, lj, f] * ra)
                        buf[li, lj, f] += w * fv
                    T[li, lj] = Ti
                    if raw <= max_alpha:
                        v_sigma = -v_a * raw
                        vo += v_a * vis
                        va += half * dx * dx * v_sigma
                        vc += half * dy * dy * v_sigma
                        vb += dx * dy * v_sigma
                        vmx += (a * dx + b * dy) * v_sigma
                        vmy += (b * dx + cc * dy) * v_sigma
            grads[k, G_MX] = vmx
            grads[k, G_MY] = vmy
            grads[k, G_A] = va
            grads[k, G_B] = vb
            grads[k, G_C] = vc
            grads[k, G_O] = vo
            for f in range(F):
                grads[k, G_FEAT + f] = vf[f]
    return grads


@njit(cache=True)
def reduce_grads(grads, ids, M):
    """Sum per-intersection gradients into per-Gaussian ones: [M, 6 + F]."""
    Q = grads.shape[1]
    out = np.zeros((M, Q), grads.dtype)
    for k in range(ids.shape[0]):
        g = ids[k]
        for q in range(Q):
            out[g, q] += grads[k, q]
    return out
