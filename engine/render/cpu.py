"""Fast differentiable CPU backend (the "torch" backend of engine.render.render).

Three torch.autograd.Functions around compiled numba kernels, each with a hand-written backward:
- projection (engine/render/_project_kernels.py): the same maths as the torch `project` in
  engine/render/projection.py, fused per Gaussian (the torch version, ~100 small ops on [N] tensors, costs
  more than the whole rasterization at 150k Gaussians); the torch version is still used when the cameras
  themselves require gradients;
- SH colours (same file), evaluated only for Gaussians that survive culling, like gsplat;
- tile rasterization (engine/render/_cpu_kernels.py), whose backward recomputes alpha instead of storing
  anything per (pixel, Gaussian): memory stays O(pixels + tile intersections).

Depth is composited as one more feature channel (gsplat's "RGB+ED" mode), so it is differentiable too.
The kernels are serial and release the GIL; `_parallel` runs them on a small thread pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from . import _cpu_kernels as K
from . import _project_kernels as PK
from .culling import reaching_index
from .projection import ALPHA_THRESHOLD, EPS2D, FAR_PLANE, MAX_EXTEND, NEAR_PLANE, RADIUS_MAX, Projected, project
from .reference import MAX_ALPHA, T_EPS, TILE_SIZE
from .types import RenderOutput

# Worker threads for the kernels (environment variable ENGINE_RENDER_THREADS, default: all cores).
NUM_THREADS = max(1, min(int(os.environ.get("ENGINE_RENDER_THREADS", os.cpu_count() or 1)), 64))
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _parallel(fn, tasks: list[tuple]) -> None:
    """Run fn(*task) for every task on the shared pool (fn must release the GIL to gain anything).
    Safe to call from several threads at once (e.g. an optimization thread and a viewer)."""
    global _POOL
    if NUM_THREADS == 1 or len(tasks) == 1:
        for task in tasks:
            fn(*task)
        return
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(NUM_THREADS, thread_name_prefix="render")
    for future in [_POOL.submit(fn, *task) for task in tasks]:
        future.result()


def _ranges(n: int, parts: int | None = None) -> list[tuple[int, int]]:
    """Split [0, n) into `parts` (default: one per thread) contiguous ranges."""
    parts = NUM_THREADS if parts is None else parts
    bounds = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _np(t: Tensor, dtype=None) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy(), dtype)


def _grad_or_zeros(grad: Tensor | None, shape: tuple, dtype) -> np.ndarray:
    return np.zeros(shape, dtype) if grad is None else _np(grad, dtype)


# ---------------------------------------------------------------------------------------------- projection
class _Project(torch.autograd.Function):
    """Raw parameters -> (means2d [C,N,2], conics [C,N,3], depths [C,N], radii [C,N,2], opacities [N])."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats: np.ndarray, Ks: np.ndarray, width: int, height: int):
        consts = _project_consts()
        f64 = np.float64
        args = (_np(means, f64), _np(quats, f64), _np(scales, f64), _np(opacities, f64), viewmats, Ks,
                int(width), int(height), consts)
        outs = project_arrays(*args[:4], viewmats, Ks, width, height)
        ctx.args, ctx.radii, ctx.dtype = args, outs[3], means.dtype
        radii = torch.from_numpy(outs[3])
        ctx.mark_non_differentiable(radii)
        means2d, conics, depths, _, opac = (torch.from_numpy(x).to(means.dtype) for x in outs)
        return means2d, conics, depths, radii, opac

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii, v_opac):
        C, N = ctx.radii.shape[:2]
        f64 = np.float64
        vs = (_grad_or_zeros(v_means2d, (C, N, 2), f64), _grad_or_zeros(v_conics, (C, N, 3), f64),
              _grad_or_zeros(v_depths, (C, N), f64), _grad_or_zeros(v_opac, (N,), f64))
        grads = (np.zeros((N, 3)), np.zeros((N, 4)), np.zeros((N, 3)), np.zeros(N))
        _parallel(PK.project_bwd, [(lo, hi, *ctx.args, ctx.radii, *vs, *grads) for lo, hi in _ranges(N)])
        return tuple(torch.from_numpy(g).to(ctx.dtype) for g in grads) + (None, None, None, None)


def _project_consts() -> np.ndarray:
    consts = np.zeros(6)
    consts[PK.P_EPS2D], consts[PK.P_NEAR], consts[PK.P_FAR] = EPS2D, NEAR_PLANE, FAR_PLANE
    consts[PK.P_ALPHA_THR], consts[PK.P_MAX_EXTEND], consts[PK.P_RADIUS_MAX] = ALPHA_THRESHOLD, MAX_EXTEND, RADIUS_MAX
    return consts


def project_arrays(means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray, opacity_logits: np.ndarray,
                   viewmats: np.ndarray, Ks: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """The compiled projection on raw arrays ([N, 3], [N, 4], [N, 3], [N]; float32 or float64, read as float64;
    cameras [C, 4, 4], [C, 3, 3] float64) -> (means2d [C, N, 2], conics [C, N, 3], depths [C, N], radii
    [C, N, 2] int32, opacities [N]), float64: for a caller that keeps few of the rows (no float64 copies of
    the inputs, no float32 copies of every output)."""
    C, N = len(viewmats), len(means)
    args = (means, quats, log_scales, opacity_logits, viewmats, Ks, int(width), int(height), _project_consts())
    outs = (np.zeros((C, N, 2)), np.zeros((C, N, 3)), np.zeros((C, N)), np.zeros((C, N, 2), np.int32), np.zeros(N))
    _parallel(PK.project_fwd, [(lo, hi, *args, *outs) for lo, hi in _ranges(N)])
    return outs


def draws_compiled(scene: GaussianScene, backend: str) -> bool:
    """Whether `render(scene, backend=backend)` runs this module's compiled kernels (a CPU scene in float32 or
    float64 under "auto" or "torch"): what the subset renders built on them (frozen_view.py, part_cover.py)
    need to draw the same picture."""
    return scene.device.type == "cpu" and backend in ("auto", "torch") and scene.dtype in (torch.float32,
                                                                                           torch.float64)


def project_fast(scene: GaussianScene, cameras: Cameras) -> Projected:
    """`projection.project` through the compiled kernels (no gradients to the cameras)."""
    viewmats = _np(cameras.viewmats, np.float64)
    Ks = _np(cameras.Ks, np.float64)
    means2d, conics, depths, radii, opac = _Project.apply(
        scene.means, scene.quats, scene.scales, scene.opacities, viewmats, Ks, cameras.width, cameras.height
    )
    return Projected(means2d, conics, depths, radii, opac[None].expand(len(cameras), -1))


# ---------------------------------------------------------------------------------------------- SH colours
class _SHColors(torch.autograd.Function):
    """(sh0 [N,1,3], shN [N,K-1,3], means [N,3]) -> colours [C,N,3] = max(SH(dir) + 0.5, 0), culled ones 0."""

    @staticmethod
    def forward(ctx, sh0, shN, means, campos: np.ndarray, radii: np.ndarray, degree: int):
        dt = _np(sh0[:1]).dtype
        args = (int(degree), _np(sh0), _np(shN), _np(means, dt), campos, radii)
        C, N = radii.shape[:2]
        out = np.zeros((C, N, 3), dt)
        _parallel(PK.sh_colors_fwd, [(lo, hi, *args, out) for lo, hi in _ranges(N)])
        ctx.args, ctx.means_dtype = args, means.dtype
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, v_colors):
        sh0, shN = ctx.args[1], ctx.args[2]
        C, N = ctx.args[5].shape[:2]
        v = _grad_or_zeros(v_colors, (C, N, 3), sh0.dtype)
        grads = (np.empty_like(sh0), np.empty_like(shN), np.empty((N, 3), sh0.dtype))  # filled by the kernel
        _parallel(PK.sh_colors_bwd, [(lo, hi, *ctx.args, v, *grads) for lo, hi in _ranges(N)])
        g_sh0, g_shN, g_means = (torch.from_numpy(g) for g in grads)
        return g_sh0, g_shN, g_means.to(ctx.means_dtype), None, None, None


def sh_colors_fast(scene: GaussianScene, cameras: Cameras, sh_degree: int, radii: Tensor) -> Tensor:
    """`projection.view_colors` through the compiled kernels, for Gaussians with radii > 0 only: [C, N, 3]."""
    campos = _np(torch.linalg.inv(cameras.viewmats.detach().double())[:, :3, 3])
    return _SHColors.apply(scene.sh0, scene.shN, scene.means, campos, _np(radii), sh_degree)


# ---------------------------------------------------------------------------------------------- rasterization
class Tiles:
    """Per-tile, depth-sorted Gaussian lists for a batch of cameras (gsplat's `isect_tiles`): the Gaussians
    of tile t are ids[offsets[t]:offsets[t+1]] (flat indices c * N + n), front to back."""

    def __init__(self, means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int):
        self.width, self.height = int(width), int(height)
        self.tiles_w = (self.width + TILE_SIZE - 1) // TILE_SIZE
        self.tiles_h = (self.height + TILE_SIZE - 1) // TILE_SIZE
        radii_np = _np(radii)
        rect, counts = K.tile_rects(_np(means2d, np.float32), radii_np, self.tiles_w, self.tiles_h)  # float32 like gsplat
        self.offsets = np.cumsum(counts)
        # Front to back by float32 depth, ties by index: gsplat's stable radix sort of (tile | depth) keys.
        depths32 = _np(depths, np.float32)
        visible = (radii_np > 0).all(axis=-1)
        N = depths32.shape[1]
        orders = []
        for c in range(len(depths32)):
            idx = np.flatnonzero(visible[c])
            orders.append(c * N + idx[K.argsort_depths(depths32[c, idx].view(np.uint32))])
        order = np.concatenate(orders) if orders else np.zeros(0, np.int64)
        self.ids = np.empty(int(self.offsets[-1]), np.int32)
        cursor = self.offsets[:-1].copy()
        _parallel(K.tile_fill, [
            (rect, order, cursor, self.tiles_w, self.tiles_h, lo, hi, self.ids) for lo, hi in _ranges(self.tiles_h)
        ])
        self.task_tiles = interleaved(np.arange(len(self.offsets) - 1, dtype=np.int64))

    @property
    def num_intersections(self) -> int:
        return int(self.ids.shape[0])


def _consts(dtype: np.dtype) -> np.ndarray:
    c = np.zeros(7, dtype)
    c[K.C_MAX_ALPHA], c[K.C_ALPHA_THR], c[K.C_T_EPS] = MAX_ALPHA, ALPHA_THRESHOLD, T_EPS
    c[K.C_ONE], c[K.C_HALF], c[K.C_ZERO], c[K.C_SIGMA_MAX] = 1.0, 0.5, 0.0, K.SIGMA_MAX
    return c


def ellipse_spans(conics: np.ndarray, opac: np.ndarray) -> np.ndarray:  # [M, 3], [M] -> [M, 5] float64
    spans = np.empty((len(opac), 5))
    K.span_params(conics.astype(np.float64), opac.astype(np.float64), ALPHA_THRESHOLD, spans)
    return spans


def raster_args(means2d: np.ndarray, conics: np.ndarray, opac: np.ndarray, feats: np.ndarray, offsets: np.ndarray,
                ids: np.ndarray, width: int, height: int, tiles_w: int, tiles_h: int,
                spans: np.ndarray | None = None) -> tuple:
    """The argument tuple K.rasterize_fwd / rasterize_bwd take after their tile list, for flat rows [M, ...] in
    the features' dtype (the ellipse spans in float64: computed unless given)."""
    dt = feats.dtype
    pxs = np.arange(width, dtype=dt) + dt.type(0.5)
    pys = np.arange(height, dtype=dt) + dt.type(0.5)
    conics, opac = np.ascontiguousarray(conics, dt), np.ascontiguousarray(opac, dt)
    if spans is None:
        spans = ellipse_spans(conics, opac)
    return (np.ascontiguousarray(means2d, dt), conics, opac, feats, spans, offsets, ids, width, height, tiles_w,
            tiles_h, pxs, pys, _consts(dt))


def interleaved(tiles: np.ndarray) -> list[np.ndarray]:
    """`tiles` split into interleaved sets, two per thread: neighbouring tiles cost about the same."""
    n_tasks = max(1, min(len(tiles), 2 * NUM_THREADS))
    return [tiles[i::n_tasks] for i in range(n_tasks)]


class _Rasterize(torch.autograd.Function):
    """(means2d [C,N,2], conics [C,N,3], opacities [C,N], feats [C,N,F]) -> (out [C,H,W,F], alpha [C,H,W,1])."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor, tiles: Tiles):
        C, N, F = feats.shape
        dt = _np(feats[:0]).dtype
        args = raster_args(_np(means2d, dt).reshape(C * N, 2), _np(conics, dt).reshape(C * N, 3),
                           _np(opacities, dt).reshape(C * N), _np(feats).reshape(C * N, F), tiles.offsets, tiles.ids,
                           tiles.width, tiles.height, tiles.tiles_w, tiles.tiles_h)
        out = np.zeros((C, tiles.height, tiles.width, F), dt)
        T_final = np.ones((C, tiles.height, tiles.width), dt)
        last = np.full((C, tiles.height, tiles.width), -1, np.int32)
        _parallel(K.rasterize_fwd, [(t, *args, out, T_final, last) for t in tiles.task_tiles])
        ctx.tiles, ctx.args, ctx.shape = tiles, args, (C, N, F)
        ctx.T_final, ctx.last = T_final, last
        return torch.from_numpy(out), 1.0 - torch.from_numpy(T_final)[..., None]

    @staticmethod
    def backward(ctx, v_out: Tensor | None, v_alpha: Tensor | None):
        C, N, F = ctx.shape
        tiles = ctx.tiles
        dt = ctx.args[3].dtype
        H, W = tiles.height, tiles.width
        v_out = _grad_or_zeros(v_out, (C, H, W, F), dt)
        v_alpha = _grad_or_zeros(None if v_alpha is None else v_alpha[..., 0], (C, H, W), dt)
        # One gradient buffer per task (deterministic: fixed tile sets, summed in a fixed order).
        grads = np.zeros((len(tiles.task_tiles), C * N, K.G_FEAT + F), dt)
        _parallel(K.rasterize_bwd, [
            (t, *ctx.args, ctx.T_final, ctx.last, v_out, v_alpha, grads[i], 0) for i, t in enumerate(tiles.task_tiles)
        ])
        g = torch.from_numpy(grads.sum(axis=0)).reshape(C, N, K.G_FEAT + F)
        return g[..., K.G_MX : K.G_MY + 1], g[..., K.G_A : K.G_C + 1], g[..., K.G_O], g[..., K.G_FEAT :], None


def rasterize(
    proj: Projected,
    feats: Tensor,  # [C, N, F]
    width: int,
    height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Like reference.rasterize_dense: (features [C,H,W,F], alpha [C,H,W,1], accumulated depth [C,H,W,1])."""
    tiles = Tiles(proj.means2d, proj.radii, proj.depths, width, height)
    feats_d = torch.cat([feats, proj.depths[..., None].to(feats.dtype)], dim=-1)
    out, alpha = _Rasterize.apply(proj.means2d, proj.conics, proj.opacities, feats_d, tiles)
    return out[..., :-1], alpha, out[..., -1:]


def render_cpu(
    scene: GaussianScene,
    cameras: Cameras,
    *,
    sh_degree: int,
    background: Tensor | tuple | None = None,
    colors: Tensor | None = None,
    cull: bool = True,
) -> RenderOutput:
    """The "torch" backend of engine.render.render (same contract). With `cull`, only the rows that can show in
    some camera (engine/render/culling.py) are projected, shaded and rasterized: the same picture, the same
    gradients for those rows (zero for the others), and meta's radii / means2d still [C, N, ...]."""
    from . import _finish, _resolve_colors

    if scene.device.type != "cpu":
        raise ValueError(f"the CPU backend needs a scene on the CPU, got {scene.device}")
    if scene.dtype not in (torch.float32, torch.float64):
        scene = scene.to(dtype=torch.float32)
        cameras = cameras.to(dtype=torch.float32)
    torch_projection = cameras.viewmats.requires_grad or cameras.Ks.requires_grad  # camera gradients
    if colors is not None:
        colors = _resolve_colors(scene, cameras, sh_degree, colors)  # checked and [C, N, D]
    keep = reaching_index(scene, cameras) if cull and not torch_projection and len(scene) else None
    if keep is not None:
        N = len(scene)
        shading = colors is None  # with colours given, the SH coefficients are not read: not gathered
        scene = GaussianScene.trusted(**{name: t[keep] if shading or name not in ("sh0", "shN") else t
                                         for name, t in scene.items()})
        colors = None if colors is None else colors[:, keep]
    if torch_projection:
        proj = project(
            scene.means, scene.quats, scene.scales, scene.opacities, cameras.viewmats, cameras.Ks,
            cameras.width, cameras.height,
        )
        feats = _resolve_colors(scene, cameras, sh_degree, colors)
    else:
        proj = project_fast(scene, cameras)
        if keep is not None:  # meta at full size; the rasterizer reads its rows, so means2d.grad is filled
            full = proj.means2d.new_zeros(len(cameras), N, 2).index_copy(1, keep, proj.means2d)
            proj.means2d = full[:, keep]
        feats = sh_colors_fast(scene, cameras, sh_degree, proj.radii) if colors is None else colors
    feats = feats.to(scene.dtype)
    out, alpha, acc_depth = rasterize(proj, feats, cameras.width, cameras.height)
    radii, means2d = proj.radii, proj.means2d
    if keep is not None:
        radii = radii.new_zeros(len(cameras), N, 2).index_copy(1, keep, radii)
        means2d = full
    return _finish(out, alpha, acc_depth, background, {"radii": radii, "means2d": means2d, "backend": "torch"})
