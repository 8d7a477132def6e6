"""GPU backend without a compiler toolchain: projection and SH in torch, rasterization in Triton kernels.

gsplat compiles CUDA sources on first use (nvcc, headers, a host compiler); Triton ships with CUDA builds of
torch and compiles its kernels at run time by itself, so this backend runs wherever torch sees a GPU. Split:
- projection (engine/render/projection.py) and SH colours are elementwise over Gaussians: plain torch, autograd;
- tile binning and the depth sort: torch (one stable sort of (tile, depth) keys, gsplat's `isect_tiles`);
- compositing forward and backward: engine/render/triton_kernels.py inside one torch.autograd.Function.
Depth is composited as one more feature channel (gsplat's "RGB+ED"), so it is differentiable like the rest.

With TRITON_INTERPRET=1 in the environment before triton is first imported, the kernels run on CPU tensors
(slowly): that is how the tests check this backend against the CPU rasterizer on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from .projection import project
from .types import RenderOutput

TILE_SIZE = 16
FLOAT_TYPES = (torch.float32, torch.float64)


def interpreted() -> bool:
    """Whether triton runs kernels in its CPU interpreter in this process (TRITON_INTERPRET=1 at import)."""
    from triton import knobs

    return bool(knobs.runtime.interpret)


@dataclass
class TileLists:
    """Per-tile, depth-sorted Gaussian lists: tile t (camera-major, row-major) holds
    ids[offsets[t]:offsets[t+1]], flat indices c * N + n, front to back (ties by index)."""

    offsets: Tensor  # [C * tiles_h * tiles_w + 1] int32
    ids: Tensor  # [intersections] int32
    width: int
    height: int
    tiles_w: int
    tiles_h: int

    @property
    def num_intersections(self) -> int:
        return int(self.ids.numel())


def bin_tiles(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2] int32, 0 = culled
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
) -> TileLists:
    """gsplat's tile rule (in float32: floor/ceil of mean/16 -+ radius/16, clamped) and a stable sort."""
    C, N = depths.shape
    tiles_w, tiles_h = -(-int(width) // TILE_SIZE), -(-int(height) // TILE_SIZE)
    device = depths.device
    m = means2d.detach().float() / TILE_SIZE
    r = radii.float() / TILE_SIZE
    x0 = torch.floor(m[..., 0] - r[..., 0]).clamp(0, tiles_w).long()
    y0 = torch.floor(m[..., 1] - r[..., 1]).clamp(0, tiles_h).long()
    x1 = torch.ceil(m[..., 0] + r[..., 0]).clamp(0, tiles_w).long()
    y1 = torch.ceil(m[..., 1] + r[..., 1]).clamp(0, tiles_h).long()
    visible = (radii > 0).all(dim=-1)
    span_w = (x1 - x0).clamp_min(0)
    counts = torch.where(visible, span_w * (y1 - y0).clamp_min(0), torch.zeros_like(span_w)).reshape(-1)
    gid = torch.repeat_interleave(torch.arange(C * N, device=device), counts)  # [I] flat Gaussian per entry
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(gid.numel(), device=device) - first[gid]
    w = span_w.reshape(-1)[gid]
    tx = x0.reshape(-1)[gid] + local % w.clamp_min(1)
    ty = y0.reshape(-1)[gid] + local // w.clamp_min(1)
    tile = torch.div(gid, N, rounding_mode="floor") * (tiles_w * tiles_h) + ty * tiles_w + tx
    # positive float32 depths order like their bit patterns: one int64 key (tile, depth); stable -> ties by index
    depth_bits = depths.detach().float().contiguous().view(torch.int32).reshape(-1)[gid].long()
    order = torch.sort(tile * (1 << 32) + depth_bits, stable=True).indices
    per_tile = torch.bincount(tile, minlength=C * tiles_w * tiles_h)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=device), torch.cumsum(per_tile, 0)])
    return TileLists(offsets.int(), gid[order].int(), int(width), int(height), tiles_w, tiles_h)


def _launch_args(tiles: TileLists, num_feats: int, warps: int) -> tuple[tuple, tuple, dict]:
    from . import triton_kernels as TK

    chunk, rows = (TK.INTERPRETER_CHUNK, TK.INTERPRETER_ROWS) if interpreted() else (TK.CHUNK, TK.ROWS)
    grid = ((tiles.offsets.numel() - 1) * (TK.TILE_SIZE // rows),)
    sizes = (tiles.width, tiles.height, tiles.tiles_w, tiles.tiles_w * tiles.tiles_h, num_feats)
    consts = dict(TILE=TK.TILE_SIZE, ROWS=rows, CHUNK=chunk, FP=max(16, _next_pow2(num_feats)),
                  num_warps=warps)
    return grid, sizes, consts


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class _Rasterize(torch.autograd.Function):
    """(means2d [C,N,2], conics [C,N,3], opacities [C,N], feats [C,N,F]) -> (out [C,H,W,F], alpha [C,H,W,1])."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor, tiles: TileLists):
        from . import triton_kernels as TK

        C, N, F = feats.shape
        dt = feats.dtype
        flat = [t.detach().to(dt).reshape(C * N, -1).contiguous() for t in (means2d, conics, opacities, feats)]
        ids = tiles.ids if tiles.ids.numel() else torch.zeros(1, dtype=torch.int32, device=feats.device)
        out = torch.empty(C, tiles.height, tiles.width, F, dtype=dt, device=feats.device)
        T_final = torch.empty(C, tiles.height, tiles.width, dtype=dt, device=feats.device)
        last = torch.empty(C, tiles.height, tiles.width, dtype=torch.int32, device=feats.device)
        grid, sizes, consts = _launch_args(tiles, F, TK.WARPS_FWD)
        TK.rasterize_fwd[grid](*flat, tiles.offsets, ids, out, T_final, last, *sizes, **consts)
        ctx.save_for_backward(*flat, ids, T_final, last)
        ctx.tiles, ctx.shape = tiles, (C, N, F)
        return out, (1.0 - T_final)[..., None]

    @staticmethod
    def backward(ctx, v_out: Tensor | None, v_alpha: Tensor | None):
        from . import triton_kernels as TK

        means2d, conics, opac, feats, ids, T_final, last = ctx.saved_tensors
        tiles, (C, N, F) = ctx.tiles, ctx.shape
        dt, device = feats.dtype, feats.device
        v_out = feats.new_zeros(C, tiles.height, tiles.width, F) if v_out is None else v_out
        v_alpha = T_final.new_zeros(T_final.shape) if v_alpha is None else v_alpha[..., 0]
        grads = torch.zeros(C * N, 6, dtype=dt, device=device)
        v_feats = torch.zeros(C * N, F, dtype=dt, device=device)
        grid, sizes, consts = _launch_args(tiles, F, TK.WARPS_BWD)
        TK.rasterize_bwd[grid](means2d, conics, opac, feats, tiles.offsets, ids, T_final, last,
                               v_out.to(dt).contiguous(), v_alpha.to(dt).contiguous(), grads, v_feats,
                               *sizes, **consts)
        grads = grads.reshape(C, N, 6)
        return grads[..., 0:2], grads[..., 2:5], grads[..., 5], v_feats.reshape(C, N, F), None


def rasterize(proj, feats: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor, TileLists]:
    """(features [C,H,W,F], alpha [C,H,W,1], accumulated depth [C,H,W,1], the tile lists) before background."""
    tiles = bin_tiles(proj.means2d, proj.radii, proj.depths, width, height)
    feats_d = torch.cat([feats, proj.depths[..., None].to(feats.dtype)], dim=-1)
    out, alpha = _Rasterize.apply(proj.means2d, proj.conics, proj.opacities, feats_d, tiles)
    return out[..., :-1], alpha, out[..., -1:], tiles


def check_device(device: torch.device) -> None:
    """Raises ValueError unless the kernels can run on `device` in this process."""
    if device.type == "cuda" or (device.type == "cpu" and interpreted()):
        return
    raise ValueError(f"the triton backend needs a scene on a CUDA device, got {device} (a CPU scene renders "
                     "through it only under the interpreter: TRITON_INTERPRET=1 before triton is imported)")


def render_triton(
    scene: GaussianScene,
    cameras: Cameras,
    *,
    sh_degree: int,
    background: Tensor | tuple | None = None,
    colors: Tensor | None = None,  # [N, D] or [C, N, D] features instead of SH colour
) -> RenderOutput:
    """The "triton" backend of engine.render.render (same contract as the others)."""
    from . import _finish, _resolve_colors

    check_device(scene.device)
    if scene.dtype not in FLOAT_TYPES:
        scene, cameras = scene.to(dtype=torch.float32), cameras.to(dtype=torch.float32)
    proj = project(scene.means, scene.quats, scene.scales, scene.opacities, cameras.viewmats, cameras.Ks,
                   cameras.width, cameras.height)
    feats = _resolve_colors(scene, cameras, sh_degree, colors).to(scene.dtype)
    out, alpha, acc_depth, tiles = rasterize(proj, feats, int(cameras.width), int(cameras.height))
    meta = {"radii": proj.radii, "means2d": proj.means2d, "backend": "triton",
            "intersections": tiles.num_intersections}
    return _finish(out, alpha, acc_depth, background, meta)
