"""Compiled (numba) kernels of the CPU rasterizer: tile binning, forward compositing, hand-written backward.

The rules are gsplat 1.5.x's `isect_tiles` + `rasterize_to_pixels` (see engine/render/reference.py for the
readable statement): 16x16 tiles, a Gaussian listed in every tile its radius box touches, per-tile lists
sorted front to back by depth, pixel centres at (j + 0.5, i + 0.5), alpha = min(0.999, o * exp(-sigma)),
skipped when sigma < 0 or alpha < 1/255, and a pixel stops (exclusively) at the first Gaussian that would
bring its transmittance to <= 1e-4.

How it is made fast (none of this changes which Gaussians reach which pixel):
- inside a tile each Gaussian visits only the pixels of its alpha >= 1/255 ellipse: per pixel row the
  interval where sigma <= log(o * 255) (float64, with a little slack; the exact per-pixel test still
  decides) instead of all 256 pixels (the finest possible "sub-tile");
- rows whose pixels are all done are skipped, and a tile stops walking its list once every pixel is done;
- the exponent is clamped to SIGMA_MAX before exp (no denormals), and float32 uses a polynomial exp
  (`fexp`, ~1.6 ulp; gsplat itself uses the approximate __expf);
- the backward recomputes alpha and walks each tile back to front from its pixels' last contributors, so
  nothing per (pixel, Gaussian) is stored: only the final transmittance and last index per pixel.
A branch-free, vectorized (AVX2) variant of the pixel loops was tried and was slower: the ellipse spans
are short (a few pixels), so the exact-span scalar loop wins.

Kernels are generic in the float type (float32 for speed, float64 for gradcheck, where fexp is math.exp):
constants come in the `consts` array and pixel centres in `pxs`/`pys`, so no arithmetic is silently
promoted to float64; where float64 is wanted (ellipse spans) values are converted with np.float64()
(numba's float() keeps a float32 a float32). Kernels are serial and release the GIL (nogil=True); the
caller runs them on a few Python threads over interleaved tile sets. This compiles ~3x faster than numba's
parallel=True (parfors), which matters because a fresh checkout (CI) pays the compile once; compiled code
is then cached on disk (cache=True).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

TILE_SIZE = 16
# Which fast-math liberties are safe: no NaN/Inf assumptions (we rely on comparisons being honest).
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# Indices into the `consts` array passed to the raster kernels.
C_MAX_ALPHA, C_ALPHA_THR, C_T_EPS, C_ONE, C_HALF, C_ZERO, C_SIGMA_MAX = range(7)
# sigma is clamped to this before exp: exp(-30) < 1e-13, far below the 1/255 alpha threshold.
SIGMA_MAX = 30.0
# Relative and absolute slack on s = log(o / thr) for the pixel spans (s + SLACK * (1 + s)): spans may be
# a little too wide (the per-pixel test decides), never too narrow.
SPAN_SLACK = 1e-3
# Gradient layout: d/d(mean x, mean y, conic a, b, c, opacity), then the F feature channels.
G_MX, G_MY, G_A, G_B, G_C, G_O, G_FEAT = range(7)


# ------------------------------------------------------------------------------------------------ exp
@intrinsic
def _int_bits_as_float32(typingctx, x):
    """Reinterpret the low 32 bits of an integer as a float32 (to build 2^n exactly)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if x.bitwidth != 32:
            value = builder.trunc(value, ir.IntType(32)) if x.bitwidth > 32 else builder.sext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(x), codegen


# 2^f on [-0.5, 0.5], degree-6 minimax-style fit, max relative error 1e-7 in float32.
_EXP2_POLY = (1.000000000554174, 0.6931472057374961, 0.24022646890593857, 0.05550328776462899,
              0.009618488959621058, 0.001339993142357991, 0.00015345811815441548)


def fexp(x):
    """exp(x) for x in [-SIGMA_MAX, 0]: a polynomial for float32 (as fast as libm's expf here, but
    inlinable and vectorizable), math.exp for float64."""
    return math.exp(x)


@overload(fexp, jit_options={"fastmath": FASTMATH})
def _fexp_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        log2e = np.float32(1.4426950408889634)
        c0, c1, c2, c3, c4, c5, c6 = (np.float32(c) for c in _EXP2_POLY)
        half = np.float32(0.5)

        def impl(x):
            t = x * log2e
            n = np.floor(t + half)
            f = t - n
            p = c6 * f + c5
            p = p * f + c4
            p = p * f + c3
            p = p * f + c2
            p = p * f + c1
            p = p * f + c0
            return p * _int_bits_as_float32((np.int32(n) + 127) << 23)

        return impl
    return lambda x: math.exp(x)


# ------------------------------------------------------------------------------------------------ binning
@njit(cache=True, nogil=True)
def tile_rects(means2d, radii, tiles_w, tiles_h):
    """Tile range [x0, y0, x1, y1) of every Gaussian, gsplat's rule, and the per-tile counts.

    means2d [C, N, 2], radii [C, N, 2] int32 -> (rect [C, N, 4] int32, counts [C*TH*TW + 1] int64 where
    counts[t + 1] is the number of Gaussians in tile t). Tiles are numbered camera-major, row-major.
    """
    C, N = radii.shape[:2]
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
    return rect, counts


@njit(cache=True, nogil=True)
def argsort_depths(keys):
    """Stable argsort of float32 depths given as their uint32 bit patterns (order-preserving for the positive
    depths of visible Gaussians), by a two-pass 16-bit LSD radix sort: O(N), several times faster than
    numpy's stable sort (timsort) for floats. Ties keep index order, like gsplat's stable radix sort."""
    n = keys.shape[0]
    idx = np.arange(n)
    tmp = np.empty(n, np.int64)
    for shift in range(0, 32, 16):
        counts = np.zeros(65537, np.int64)
        for i in range(n):
            counts[((np.int64(keys[idx[i]]) >> shift) & 0xFFFF) + 1] += 1
        for d in range(65536):
            counts[d + 1] += counts[d]
        for i in range(n):
            d = (np.int64(keys[idx[i]]) >> shift) & 0xFFFF
            tmp[counts[d]] = idx[i]
            counts[d] += 1
        idx, tmp = tmp, idx
    return idx


@njit(cache=True, nogil=True)
def tile_fill(rect, order, cursor, tiles_w, tiles_h, row_lo, row_hi, ids):
    """Write the tile lists of tile rows [row_lo, row_hi) (of every camera) into ids [n_isect] int32: the
    Gaussians (flat indices c * N + n) in the order given by `order` (flat indices, each camera's front to
    back); cursor[t] starts at tile t's offset and is advanced. Threads take disjoint row bands."""
    N = rect.shape[1]
    tiles_per_cam = tiles_w * tiles_h
    for i in range(order.shape[0]):
        c = order[i] // N
        n = order[i] % N
        for y in range(max(rect[c, n, 1], row_lo), min(rect[c, n, 3], row_hi)):
            for x in range(rect[c, n, 0], rect[c, n, 2]):
                t = c * tiles_per_cam + y * tiles_w + x
                ids[cursor[t]] = order[i]
                cursor[t] += 1


# ------------------------------------------------------------------------------------------------ raster
# Per-Gaussian ellipse parameters (float64), layout of the `spans` array:
S_TWO_AS, S_DET, S_INV_A, S_EXT_X, S_EXT_Y = range(5)


@njit(cache=True, nogil=True)
def span_params(conics, opac, thr, spans):
    """For every Gaussian the ellipse {sigma <= log(o / thr)} (+ slack), outside of which alpha < thr:
    spans [M, 5] = (2 a s, det, 1 / a, half width, half height in pixels); 2 a s < 0: no pixel at all.

    In a row at dy = mean_y - pixel_y, sigma(dx) <= s  <=>  (a dx + b dy)^2 <= 2 a s - det dy^2."""
    for g in range(conics.shape[0]):
        a = np.float64(conics[g, 0])
        b = np.float64(conics[g, 1])
        c = np.float64(conics[g, 2])
        o = np.float64(opac[g])
        det = a * c - b * b
        spans[g, S_TWO_AS] = -1.0
        if o < thr or a <= 0.0 or det <= 0.0:
            continue
        s = math.log(o / thr)
        s += SPAN_SLACK * (1.0 + s)
        spans[g, S_TWO_AS] = 2.0 * a * s
        spans[g, S_DET] = det
        spans[g, S_INV_A] = 1.0 / a
        spans[g, S_EXT_X] = math.sqrt(2.0 * c * s / det)
        spans[g, S_EXT_Y] = math.sqrt(2.0 * a * s / det)


@njit(cache=True, inline="always")
def _tile_box(t, tiles_w, tiles_h, width, height):
    tiles_per_cam = tiles_w * tiles_h
    cam = t // tiles_per_cam
    ty = (t % tiles_per_cam) // tiles_w
    tx = t % tiles_w
    x0 = tx * TILE_SIZE
    y0 = ty * TILE_SIZE
    return cam, x0, y0, min(x0 + TILE_SIZE, width), min(y0 + TILE_SIZE, height)


@njit(cache=True, inline="always")
def _rows(my, sp, y0, y1):
    """Pixel rows [r0, r1) within [y0, y1) that one Gaussian's ellipse reaches."""
    if sp[S_TWO_AS] < 0.0:
        return y0, y0
    r0 = max(y0, int(math.ceil(my - sp[S_EXT_Y] - 0.5)))
    r1 = min(y1, int(math.floor(my + sp[S_EXT_Y] - 0.5)) + 1)
    return r0, r1


@njit(cache=True, inline="always")
def _row_spans(mx, my, b, sp, y0, r0, r1, x0, x1, pys, c0s, c1s):
    """For tile rows r0..r1-1: the pixel columns [c0s[i], c1s[i]) (i = row - y0) within [x0, x1) of one
    Gaussian's ellipse. All rows first, in one tight loop (independent square roots overlap), then the pixels."""
    two_as = sp[S_TWO_AS]
    det = sp[S_DET]
    inv_a = sp[S_INV_A]
    for i in range(r0 - y0, r1 - y0):
        dy = np.float64(my - pys[y0 + i])
        root = math.sqrt(max(two_as - det * dy * dy, 0.0)) * inv_a
        centre = mx + b * dy * inv_a  # pixel x where sigma is smallest in this row
        c0s[i] = max(x0, int(math.ceil(centre - root - 0.5)))
        c1s[i] = min(x1, int(math.floor(centre + root - 0.5)) + 1)


# Tile-local arrays are indexed with unsigned integers: numba adds negative-index wraparound code for
# signed ones, which costs in these inner loops.


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def rasterize_fwd(
    tiles, means2d, conics, opac, feats, spans, offsets, ids, width, height, tiles_w, tiles_h, pxs, pys, consts,
    out, T_final, last,
):
    """Front-to-back compositing of the tiles listed in `tiles` (int64 tile numbers).

    means2d [M, 2], conics [M, 3], opac [M], feats [M, F] (M = C * N, flat); spans [M, 5] from span_params;
    offsets/ids: the tile lists; pxs [W] / pys [H] pixel centres; consts: see C_*. Writes out [C, H, W, F]
    (no background), T_final [C, H, W] (= 1 - alpha) and last [C, H, W] int32 (list position of the last
    contributor, -1 none). Runs without the GIL: callers split the tiles over threads.
    """
    max_alpha = consts[C_MAX_ALPHA]
    thr = consts[C_ALPHA_THR]
    t_eps = consts[C_T_EPS]
    one = consts[C_ONE]
    half = consts[C_HALF]
    zero = consts[C_ZERO]
    sigma_max = consts[C_SIGMA_MAX]
    F = feats.shape[1]
    dt = feats.dtype
    T = np.empty((TILE_SIZE, TILE_SIZE), dt)
    acc = np.empty((TILE_SIZE, TILE_SIZE, F), dt)
    lst = np.empty((TILE_SIZE, TILE_SIZE), np.int32)
    done = np.empty((TILE_SIZE, TILE_SIZE), np.bool_)
    row_left = np.empty(TILE_SIZE, np.int64)  # pixels not yet done, per row
    c0s = np.empty(TILE_SIZE, np.int64)  # per-row pixel span of the current Gaussian
    c1s = np.empty(TILE_SIZE, np.int64)
    for t in tiles:
        cam, x0, y0, x1, y1 = _tile_box(t, tiles_w, tiles_h, width, height)
        th = y1 - y0
        tw = x1 - x0
        pxt = pxs[x0:x1]
        T[:] = one
        acc[:] = zero
        lst[:] = -1
        done[:] = False
        row_left[:] = tw
        tile_left = th * tw
        for k in range(offsets[t], offsets[t + 1]):
            if tile_left == 0:
                break
            g = ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            a = conics[g, 0]
            b = conics[g, 1]
            cc = conics[g, 2]
            o = opac[g]
            fg = feats[g]
            sp = spans[g]
            r0, r1 = _rows(np.float64(my), sp, y0, y1)
            _row_spans(np.float64(mx), my, np.float64(b), sp, y0, r0, r1, x0, x1, pys, c0s, c1s)
            for li in range(np.uintp(r0 - y0), np.uintp(r1 - y0)):
                if row_left[li] == 0:
                    continue
                dy = my - pys[y0 + li]
                for lj in range(np.uintp(c0s[li] - x0), np.uintp(max(c0s[li], c1s[li]) - x0)):
                    if done[li, lj]:
                        continue
                    dx = mx - pxt[lj]
                    sigma = half * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    if sigma < zero:
                        continue
                    alpha = min(max_alpha, o * fexp(-min(sigma, sigma_max)))
                    if alpha < thr:
                        continue
                    Tc = T[li, lj]
                    nT = Tc * (one - alpha)
                    if nT <= t_eps:  # this pixel is done; the Gaussian does not count (exclusive)
                        done[li, lj] = True
                        row_left[li] -= 1
                        tile_left -= 1
                        continue
                    w = alpha * Tc
                    for f in range(F):
                        acc[li, lj, f] += w * fg[f]
                    T[li, lj] = nT
                    lst[li, lj] = k
        for li in range(th):
            for lj in range(tw):
                T_final[cam, y0 + li, x0 + lj] = T[li, lj]
                last[cam, y0 + li, x0 + lj] = lst[li, lj]
                for f in range(F):
                    out[cam, y0 + li, x0 + lj, f] = acc[li, lj, f]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def rasterize_bwd(
    tiles, means2d, conics, opac, feats, spans, offsets, ids, width, height, tiles_w, tiles_h, pxs, pys, consts,
    T_final, last, v_out, v_alpha, grads, first,
):
    """Gradients of rasterize_fwd for the listed tiles, accumulated per Gaussian g >= first into
    grads[g - first] ([M - first, 6 + F], layout G_*; each thread passes its own buffer, the caller sums them):
    rows before `first` are composited but get no gradient (an edit's frozen rows).

    Walks each tile back to front from the last contributor of any of its pixels, recovering the
    transmittance before each Gaussian by division (T_i = T_{i+1} / (1 - alpha_i), as gsplat does) and the
    features behind it by accumulation, recomputing alpha from the inputs. v_out [C, H, W, F], v_alpha [C, H, W].
    """
    max_alpha = consts[C_MAX_ALPHA]
    thr = consts[C_ALPHA_THR]
    one = consts[C_ONE]
    half = consts[C_HALF]
    zero = consts[C_ZERO]
    sigma_max = consts[C_SIGMA_MAX]
    F = feats.shape[1]
    dt = feats.dtype
    T = np.empty((TILE_SIZE, TILE_SIZE), dt)
    buf = np.empty((TILE_SIZE, TILE_SIZE, F), dt)  # features composited behind the current Gaussian
    lst = np.empty((TILE_SIZE, TILE_SIZE), np.int64)
    vo_px = np.empty((TILE_SIZE, TILE_SIZE, F), dt)
    va_px = np.empty((TILE_SIZE, TILE_SIZE), dt)  # v_alpha * T_final: d alpha_out / d alpha_i = T_final / (1 - alpha_i)
    row_last = np.empty(TILE_SIZE, np.int64)
    vf = np.empty(F, dt)
    c0s = np.empty(TILE_SIZE, np.int64)  # per-row pixel span of the current Gaussian
    c1s = np.empty(TILE_SIZE, np.int64)
    for t in tiles:
        cam, x0, y0, x1, y1 = _tile_box(t, tiles_w, tiles_h, width, height)
        th = y1 - y0
        tw = x1 - x0
        pxt = pxs[x0:x1]
        buf[:] = zero
        kmax = offsets[t] - 1
        for li in range(th):
            row_last[li] = -1
            for lj in range(tw):
                T[li, lj] = T_final[cam, y0 + li, x0 + lj]
                lst[li, lj] = last[cam, y0 + li, x0 + lj]
                row_last[li] = max(row_last[li], lst[li, lj])
                va_px[li, lj] = v_alpha[cam, y0 + li, x0 + lj] * T[li, lj]
                for f in range(F):
                    vo_px[li, lj, f] = v_out[cam, y0 + li, x0 + lj, f]
            kmax = max(kmax, row_last[li])
        for k in range(kmax, offsets[t] - 1, -1):
            g = ids[k]
            mx = means2d[g, 0]
            my = means2d[g, 1]
            a = conics[g, 0]
            b = conics[g, 1]
            cc = conics[g, 2]
            o = opac[g]
            fg = feats[g]
            sp = spans[g]
            vmx = zero
            vmy = zero
            va = zero
            vb = zero
            vc = zero
            vo = zero
            vf[:] = zero
            touched = False
            wanted = g >= first
            r0, r1 = _rows(np.float64(my), sp, y0, y1)
            _row_spans(np.float64(mx), my, np.float64(b), sp, y0, r0, r1, x0, x1, pys, c0s, c1s)
            for li in range(np.uintp(r0 - y0), np.uintp(r1 - y0)):
                if k > row_last[li]:
                    continue
                dy = my - pys[y0 + li]
                for lj in range(np.uintp(c0s[li] - x0), np.uintp(max(c0s[li], c1s[li]) - x0)):
                    if k > lst[li, lj]:
                        continue
                    dx = mx - pxt[lj]
                    sigma = half * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    if sigma < zero:
                        continue
                    vis = fexp(-min(sigma, sigma_max))
                    raw = o * vis
                    alpha = min(max_alpha, raw)
                    if alpha < thr:
                        continue
                    touched = True
                    ra = one / (one - alpha)
                    Ti = T[li, lj] * ra
                    w = alpha * Ti
                    v_a = va_px[li, lj] * ra
                    for f in range(F):
                        vo_f = vo_px[li, lj, f]
                        vf[f] += w * vo_f
                        v_a += vo_f * (fg[f] * Ti - buf[li, lj, f] * ra)
                        buf[li, lj, f] += w * fg[f]
                    T[li, lj] = Ti
                    if wanted and raw <= max_alpha:  # the clamp at 0.999 blocks the gradient, as in gsplat
                        v_sigma = -v_a * raw
                        vo += v_a * vis
                        va += half * dx * dx * v_sigma
                        vc += half * dy * dy * v_sigma
                        vb += dx * dy * v_sigma
                        vmx += (a * dx + b * dy) * v_sigma
                        vmy += (b * dx + cc * dy) * v_sigma
            if touched and wanted:
                r = g - first
                grads[r, G_MX] += vmx
                grads[r, G_MY] += vmy
                grads[r, G_A] += va
                grads[r, G_B] += vb
                grads[r, G_C] += vc
                grads[r, G_O] += vo
                for f in range(F):
                    grads[r, G_FEAT + f] += vf[f]
