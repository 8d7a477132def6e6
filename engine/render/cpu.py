"""Fast differentiable CPU backend: torch projection + SH (autograd) and numba tile rasterization.

The projection (engine/render/projection.py) and the SH colours stay in torch autograd: they are cheap and
per-Gaussian. The per-pixel compositing, the expensive part, is a torch.autograd.Function around compiled
kernels (engine/render/_cpu_kernels.py) with a hand-written backward that recomputes alpha instead of
storing anything per (pixel, Gaussian); memory stays O(pixels + intersections).

Depth is composited as one more feature channel (gsplat's "RGB+ED" mode), so it is differentiable too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from . import _cpu_kernels as K
from .projection import ALPHA_THRESHOLD, Projected, project
from .reference import MAX_ALPHA, T_EPS, TILE_SIZE
from .types import RenderOutput


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _consts(dtype: np.dtype) -> np.ndarray:
    c = np.zeros(6, dtype)
    c[K.C_MAX_ALPHA], c[K.C_ALPHA_THR], c[K.C_T_EPS] = MAX_ALPHA, ALPHA_THRESHOLD, T_EPS
    c[K.C_ONE], c[K.C_HALF], c[K.C_ZERO] = 1.0, 0.5, 0.0
    return c


class Tiles:
    """Per-tile, depth-sorted Gaussian lists for a batch of cameras (gsplat's `isect_tiles`)."""

    def __init__(self, proj: Projected, width: int, height: int):
        self.width, self.height = int(width), int(height)
        self.tiles_w = (self.width + TILE_SIZE - 1) // TILE_SIZE
        self.tiles_h = (self.height + TILE_SIZE - 1) // TILE_SIZE
        self.offsets, self.ids = K.bin_gaussians(
            _np(proj.means2d), _np(proj.radii), _np(proj.depths), self.tiles_w, self.tiles_h
        )

    @property
    def num_intersections(self) -> int:
        return int(self.ids.shape[0])


class _Rasterize(torch.autograd.Function):
    """(means2d [C,N,2], conics [C,N,3], opacities [C,N], feats [C,N,F]) -> (out [C,H,W,F], alpha [C,H,W,1])."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor, tiles: Tiles):
        C, N, F = feats.shape
        dtype = feats.dtype
        args = _kernel_args(means2d, conics, opacities, feats, tiles)
        out, T_final, last = K.rasterize_fwd(*args)
        ctx.tiles = tiles
        ctx.args = args
        ctx.shape = (C, N, F)
        ctx.T_final, ctx.last = T_final, last
        out_t = torch.from_numpy(out)
        alpha = 1.0 - torch.from_numpy(T_final)[..., None]
        return out_t.to(dtype), alpha.to(dtype)

    @staticmethod
    def backward(ctx, v_out: Tensor, v_alpha: Tensor):
        C, N, F = ctx.shape
        dtype = ctx.args[3].dtype
        v_out = np.ascontiguousarray(v_out.detach().numpy(), dtype) if v_out is not None else np.zeros(
            (C, ctx.tiles.height, ctx.tiles.width, F), dtype
        )
        v_alpha = (
            np.ascontiguousarray(v_alpha.detach()[..., 0].numpy(), dtype)
            if v_alpha is not None
            else np.zeros((C, ctx.tiles.height, ctx.tiles.width), dtype)
        )
        grads = K.rasterize_bwd(*ctx.args, ctx.T_final, ctx.last, v_out, v_alpha)
        g = torch.from_numpy(K.reduce_grads(grads, ctx.tiles.ids, C * N)).reshape(C, N, -1)
        v_means2d = g[..., K.G_MX : K.G_MY + 1]
        v_conics = g[..., K.G_A : K.G_C + 1]
        v_opac = g[..., K.G_O]
        v_feats = g[..., K.G_FEAT :]
        return v_means2d, v_conics, v_opac, v_feats, None


def _kernel_args(means2d, conics, opacities, feats, tiles: Tiles) -> tuple:
    C, N, F = feats.shape
    dtype = _np(feats).dtype
    as_np = lambda t, *shape: np.ascontiguousarray(_np(t).reshape(*shape), dtype)
    pxs = np.arange(tiles.width, dtype=dtype) + dtype.type(0.5)
    pys = np.arange(tiles.height, dtype=dtype) + dtype.type(0.5)
    return (
        as_np(means2d, C * N, 2), as_np(conics, C * N, 3), as_np(opacities, C * N), as_np(feats, C * N, F),
        tiles.offsets, tiles.ids, tiles.width, tiles.height, tiles.tiles_w, tiles.tiles_h, pxs, pys,
        _consts(dtype),
    )


def rasterize(
    proj: Projected,
    feats: Tensor,  # [C, N, F]
    width: int,
    height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Like reference.rasterize_dense: (features [C,H,W,F], alpha [C,H,W,1], accumulated depth [C,H,W,1])."""
    tiles = Tiles(proj, width, height)
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
) -> RenderOutput:
    """The "torch" backend of engine.render.render (same contract)."""
    from . import _finish, _resolve_colors

    if scene.device.type != "cpu":
        raise ValueError(f"the CPU backend needs a scene on the CPU, got {scene.device}")
    proj = project(
        scene.means, scene.quats, scene.scales, scene.opacities, cameras.viewmats, cameras.Ks,
        cameras.width, cameras.height,
    )
    feats = _resolve_colors(scene, cameras, sh_degree, colors)
    if feats.dtype != scene.dtype:
        feats = feats.to(scene.dtype)
    out, alpha, acc_depth = rasterize(proj, feats, cameras.width, cameras.height)
    return _finish(out, alpha, acc_depth, background, {"radii": proj.radii, "means2d": proj.means2d, "backend": "torch"})
