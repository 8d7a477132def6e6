"""Triton kernels of the triton render backend: tile rasterization forward and its hand-written backward.

The compositing rule is gsplat 1.5.x's (engine/render/reference.py states it): 16x16 tiles, per-tile lists
sorted front to back, pixel centres at (j + 0.5, i + 0.5), sigma = ½(a dx² + c dy²) + b dx dy with
dx = mean - pixel, alpha = min(0.999, o·exp(-sigma)) skipped when sigma < 0 or alpha < 1/255, and a pixel
stops (exclusively) at the first Gaussian that would bring its transmittance to <= 1e-4.

One program per ROWS x 16 pixels of a tile (ROWS = 16: the whole tile), those pixels as one block. Gaussians
are taken CHUNK at a time (one coalesced load per parameter) and composited as a [pixels, CHUNK] matrix: the
sequential product of (1 - alpha) is a cumulative product along the chunk, the stop rule is "transmittance after > 1e-4" (the product only falls, so this keeps
exactly the sequential prefix), and the colour sum is one matrix product. The backward walks the chunks back
to front from the tile's last contributor, recovering the transmittance before each Gaussian by division
(as gsplat) and the features behind it as v_out · (what lies behind): only the final transmittance and the
last contributor per pixel are stored. Per-Gaussian gradients are summed over the tile's pixels and added with
one atomic per (tile, Gaussian, value).

The kernels are generic in the float type (float32 on GPUs, float64 under the interpreter for exact checks).
With TRITON_INTERPRET=1 set before triton is first imported, the same kernels run on the CPU (tests).
"""

from __future__ import annotations

import triton
import triton.language as tl

TILE_SIZE = 16
CHUNK = 16  # Gaussians per step of the inner loop (a tl.dot operand: at least 16)
# Pixel rows of a tile per program on a GPU and warps per program, chosen from the compiled kernels' register use
# on sm_90 (cuobjdump -res-usage; not timed yet): whole tiles take 255 registers and spill (backward: 1 kB of
# stack at 4 warps); 8 rows: forward 148 registers at 4 warps, backward 188 at 8 warps, neither spills.
ROWS, WARPS_FWD, WARPS_BWD = 8, 4, 8
# Under the interpreter every tl operation costs ~1 ms of Python whatever its size: bigger chunks and whole
# tiles, fewer steps.
INTERPRETER_CHUNK, INTERPRETER_ROWS = 128, 16
MAX_ALPHA = tl.constexpr(0.999)
ALPHA_THR = tl.constexpr(1.0 / 255.0)
T_EPS = tl.constexpr(1e-4)
# Gradient layout per Gaussian: d/d(mean x, mean y, conic a, b, c, opacity).
G_MX, G_MY, G_A, G_B, G_C, G_O = range(6)
G_COUNT = tl.constexpr(6)


@triton.jit
def _chunk_alpha(means2d, conics, opac, ids, k0, k_end, px, py, CHUNK: tl.constexpr):
    """Alpha [pixels, CHUNK] of list entries k0..k0+CHUNK-1 (< k_end) and what the backward needs."""
    ks = k0 + tl.arange(0, CHUNK)
    in_list = ks < k_end
    g = tl.load(ids + ks, mask=in_list, other=0).to(tl.int64)
    mx = tl.load(means2d + 2 * g, mask=in_list, other=0.0)
    my = tl.load(means2d + 2 * g + 1, mask=in_list, other=0.0)
    a = tl.load(conics + 3 * g, mask=in_list, other=0.0)
    b = tl.load(conics + 3 * g + 1, mask=in_list, other=0.0)
    c = tl.load(conics + 3 * g + 2, mask=in_list, other=0.0)
    o = tl.load(opac + g, mask=in_list, other=0.0)
    dx = mx[None, :] - px[:, None]
    dy = my[None, :] - py[:, None]
    sigma = 0.5 * (a[None, :] * dx * dx + c[None, :] * dy * dy) + b[None, :] * dx * dy
    vis = tl.exp(-tl.maximum(sigma, 0.0))
    raw = o[None, :] * vis
    alpha = tl.minimum(raw, MAX_ALPHA)
    valid = (sigma >= 0.0) & (alpha >= ALPHA_THR) & in_list[None, :]
    return ks, in_list, g, dx, dy, a, b, c, vis, raw, alpha, valid


@triton.jit
def _pixel_block(width, height, tiles_w, tiles_per_cam, dt: tl.constexpr, TILE: tl.constexpr,
                 ROWS: tl.constexpr):
    """This program's pixels: ROWS rows of one TILE x TILE tile (the forward and backward walk the same ones).
    Returns the tile index, its camera, pixel columns/rows [TILE * ROWS], which are on screen, and the pixel
    centres in `dt`."""
    t = tl.program_id(0) // (TILE // ROWS)
    cam = t // tiles_per_cam
    tx = (t % tiles_per_cam) % tiles_w
    ty = (t % tiles_per_cam) // tiles_w
    p = tl.arange(0, TILE * ROWS)
    xi = tx * TILE + p % TILE
    yi = ty * TILE + (tl.program_id(0) % (TILE // ROWS)) * ROWS + p // TILE
    inside = (xi < width) & (yi < height)
    return t, cam, xi, yi, inside, xi.to(dt) + 0.5, yi.to(dt) + 0.5


@triton.jit
def rasterize_fwd(
    means2d, conics, opac, feats,  # [M, 2], [M, 3], [M], [M, F] (M = C * N, flat c * N + n)
    offsets, ids,  # tile t lists ids[offsets[t]:offsets[t + 1]], front to back
    out, T_final, last,  # [C, H, W, F] (no background), [C, H, W], [C, H, W] int32 (-1: none)
    width, height, tiles_w, tiles_per_cam, F,
    TILE: tl.constexpr, ROWS: tl.constexpr, CHUNK: tl.constexpr, FP: tl.constexpr,
):
    dt = feats.dtype.element_ty
    t, cam, xi, yi, inside, px, py = _pixel_block(width, height, tiles_w, tiles_per_cam, dt, TILE, ROWS)
    fs = tl.arange(0, FP)
    start = tl.load(offsets + t).to(tl.int32)
    end = tl.load(offsets + t + 1).to(tl.int32)

    T = tl.full([TILE * ROWS], 1.0, dt)
    done = ~inside
    lst = tl.full([TILE * ROWS], -1, tl.int32)
    acc = tl.zeros([TILE * ROWS, FP], dt)
    k0 = start
    alive = tl.sum((~done).to(tl.int32), axis=0)
    while (k0 < end) & (alive > 0):
        ks, in_list, g, dx, dy, a, b, c, vis, raw, alpha, valid = _chunk_alpha(
            means2d, conics, opac, ids, k0, end, px, py, CHUNK)
        valid = valid & ~done[:, None]
        om = tl.where(valid, 1.0 - alpha, 1.0)
        T_after = T[:, None] * tl.cumprod(om, axis=1)  # transmittance after each entry, if all counted
        take = valid & (T_after > T_EPS)
        w = tl.where(take, alpha * (T_after / om), 0.0)
        f = tl.load(feats + g[:, None] * F + fs[None, :], mask=in_list[:, None] & (fs[None, :] < F), other=0.0)
        acc += tl.dot(w, f, input_precision="ieee")
        done = done | (tl.max((valid & ~take).to(tl.int32), axis=1) > 0)
        T = tl.min(tl.where(take, T_after, T[:, None]), axis=1)
        lst = tl.maximum(lst, tl.max(tl.where(take, ks[None, :], -1), axis=1))
        k0 += CHUNK
        alive = tl.sum((~done).to(tl.int32), axis=0)

    pix = (cam * height + yi).to(tl.int64) * width + xi
    tl.store(T_final + pix, T, mask=inside)
    tl.store(last + pix, lst, mask=inside)
    tl.store(out + pix[:, None] * F + fs[None, :], acc, mask=inside[:, None] & (fs[None, :] < F))


@triton.jit
def rasterize_bwd(
    means2d, conics, opac, feats, offsets, ids, T_final, last,
    v_out, v_alpha,  # [C, H, W, F], [C, H, W]: gradients of out and of alpha = 1 - T_final
    grads, v_feats,  # [M, G_COUNT] and [M, F], accumulated atomically
    width, height, tiles_w, tiles_per_cam, F,
    TILE: tl.constexpr, ROWS: tl.constexpr, CHUNK: tl.constexpr, FP: tl.constexpr,
):
    dt = feats.dtype.element_ty
    t, cam, xi, yi, inside, px, py = _pixel_block(width, height, tiles_w, tiles_per_cam, dt, TILE, ROWS)
    fs = tl.arange(0, FP)
    fmask = fs < F
    start = tl.load(offsets + t).to(tl.int32)
    end = tl.load(offsets + t + 1).to(tl.int32)

    pix = (cam * height + yi).to(tl.int64) * width + xi
    T_fin = tl.load(T_final + pix, mask=inside, other=1.0)
    lst = tl.load(last + pix, mask=inside, other=-1)
    vo = tl.load(v_out + pix[:, None] * F + fs[None, :], mask=inside[:, None] & fmask[None, :], other=0.0)
    va_px = tl.load(v_alpha + pix, mask=inside, other=0.0) * T_fin  # d alpha_out / d alpha_i = T_final / (1 - alpha_i)
    T = T_fin  # transmittance after the chunk being processed
    behind = tl.zeros([TILE * ROWS], dt)  # v_out · (features composited behind the chunk)
    k_last = tl.max(lst, axis=0)
    n_chunks = tl.cdiv(k_last + 1 - start, CHUNK)
    for i in range(0, n_chunks):
        k0 = start + (n_chunks - 1 - i) * CHUNK
        ks, in_list, g, dx, dy, a, b, c, vis, raw, alpha, valid = _chunk_alpha(
            means2d, conics, opac, ids, k0, end, px, py, CHUNK)
        took = valid & (ks[None, :] <= lst[:, None])
        om = tl.where(took, 1.0 - alpha, 1.0)
        T_before = T[:, None] / tl.cumprod(om, axis=1, reverse=True)
        w = tl.where(took, alpha * T_before, 0.0)
        f = tl.load(feats + g[:, None] * F + fs[None, :], mask=in_list[:, None] & fmask[None, :], other=0.0)
        vf_dot = tl.dot(vo, tl.trans(f), input_precision="ieee")  # [pixels, CHUNK] v_out · f_j
        wg = w * vf_dot
        behind_j = behind[:, None] + (tl.cumsum(wg, axis=1, reverse=True) - wg)
        ra = 1.0 / om
        v_a = tl.where(took, T_before * vf_dot - ra * behind_j + va_px[:, None] * ra, 0.0)
        v_a = tl.where(raw <= MAX_ALPHA, v_a, 0.0)  # the clamp at 0.999 blocks the gradient, as in gsplat
        v_sigma = -v_a * raw
        v_mx = tl.sum((a[None, :] * dx + b[None, :] * dy) * v_sigma, axis=0)
        v_my = tl.sum((b[None, :] * dx + c[None, :] * dy) * v_sigma, axis=0)
        v_ca = tl.sum(0.5 * dx * dx * v_sigma, axis=0)
        v_cb = tl.sum(dx * dy * v_sigma, axis=0)
        v_cc = tl.sum(0.5 * dy * dy * v_sigma, axis=0)
        v_o = tl.sum(v_a * vis, axis=0)
        v_f = tl.dot(tl.trans(w), vo, input_precision="ieee")  # [CHUNK, FP]
        touched = in_list & (tl.max(took.to(tl.int32), axis=0) > 0)
        row = grads + g * G_COUNT
        tl.atomic_add(row + 0, v_mx, mask=touched, sem="relaxed")
        tl.atomic_add(row + 1, v_my, mask=touched, sem="relaxed")
        tl.atomic_add(row + 2, v_ca, mask=touched, sem="relaxed")
        tl.atomic_add(row + 3, v_cb, mask=touched, sem="relaxed")
        tl.atomic_add(row + 4, v_cc, mask=touched, sem="relaxed")
        tl.atomic_add(row + 5, v_o, mask=touched, sem="relaxed")
        tl.atomic_add(v_feats + g[:, None] * F + fs[None, :], v_f, mask=touched[:, None] & fmask[None, :],
                      sem="relaxed")
        behind += tl.sum(wg, axis=1)
        T = tl.max(T_before, axis=1)  # before the chunk's first entry (the largest: transmittance only falls)
