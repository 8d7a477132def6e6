"""Dense reference rasterizer: every Gaussian against every pixel, in plain torch.

Slow (memory grows as pixels x Gaussians) and only meant for small scenes: it is the readable statement of
the compositing rule that the fast backends must reproduce, and the oracle their tests compare against.
Rule (gsplat 1.5.x `rasterize_to_pixels`): pixel centres at (j + 0.5, i + 0.5); a Gaussian is considered only
in the 16x16 tiles its radius box touches; Gaussians are visited front to back by depth;
sigma = ½(a dx² + c dy²) + b dx dy, skipped if sigma < 0; alpha = min(0.999, opacity · exp(-sigma)), skipped
if alpha < 1/255; compositing stops (before adding) at the first Gaussian that would bring the transmittance
to <= 1e-4.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD, Projected

TILE_SIZE = 16
MAX_ALPHA = 0.999
T_EPS = 1e-4


def tile_mask(proj: Projected, width: int, height: int, tile_size: int = TILE_SIZE) -> Tensor:
    """[C, H*W, N] bool: pixel's tile lies inside the Gaussian's tile range (gsplat's isect rule)."""
    tiles_w = (width + tile_size - 1) // tile_size
    tiles_h = (height + tile_size - 1) // tile_size
    m = proj.means2d.detach()
    r = proj.radii.float()
    tmin_x = torch.clamp(torch.floor((m[..., 0] - r[..., 0]) / tile_size), 0, tiles_w)
    tmax_x = torch.clamp(torch.ceil((m[..., 0] + r[..., 0]) / tile_size), 0, tiles_w)
    tmin_y = torch.clamp(torch.floor((m[..., 1] - r[..., 1]) / tile_size), 0, tiles_h)
    tmax_y = torch.clamp(torch.ceil((m[..., 1] + r[..., 1]) / tile_size), 0, tiles_h)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    tx = (xs // tile_size).flatten().to(m.device).float()[None, :, None]
    ty = (ys // tile_size).flatten().to(m.device).float()[None, :, None]
    alive = (proj.radii > 0).all(dim=-1)[:, None, :]
    return (
        alive
        & (tx >= tmin_x[:, None, :]) & (tx < tmax_x[:, None, :])
        & (ty >= tmin_y[:, None, :]) & (ty < tmax_y[:, None, :])
    )


def rasterize_dense(
    proj: Projected,
    colors: Tensor,  # [C, N, D]
    width: int,
    height: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns (features [C,H,W,D], alpha [C,H,W,1], accumulated depth [C,H,W,1]) before background."""
    C, N = proj.depths.shape
    order = torch.argsort(proj.depths.detach(), dim=1, stable=True)  # front to back, ties by index (gsplat)
    gather = lambda t: torch.gather(t, 1, order.view(C, N, *([1] * (t.dim() - 2))).expand_as(t))
    means2d, conics, opac = gather(proj.means2d), gather(proj.conics), gather(proj.opacities)
    cols, depths = gather(colors), gather(proj.depths)
    in_tile = torch.gather(tile_mask(proj, width, height), 2, order[:, None, :].expand(C, width * height, N))

    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pix = torch.stack([xs.flatten(), ys.flatten()], dim=-1).to(means2d) + 0.5  # [P, 2]
    d = means2d[:, None, :, :] - pix[None, :, None, :]  # [C, P, N, 2]  (mean - pixel, as gsplat)
    dx, dy = d[..., 0], d[..., 1]
    a, b, c = conics[:, None, :, 0], conics[:, None, :, 1], conics[:, None, :, 2]
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp_max(opac[:, None, :] * torch.exp(-sigma), MAX_ALPHA)
    valid = in_tile & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(valid, alpha, torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    T = torch.cumprod(torch.cat([torch.ones_like(one_minus[..., :1]), one_minus[..., :-1]], dim=-1), dim=-1)
    stop = valid & (T * one_minus <= T_EPS)
    stopped = torch.cumsum(stop.int(), dim=-1) > 0
    w = torch.where(stopped, torch.zeros_like(alpha), alpha * T)  # [C, P, N] compositing weights
    feats = torch.einsum("cpn,cnd->cpd", w, cols).reshape(C, height, width, -1)
    acc = w.sum(-1).reshape(C, height, width, 1)
    depth = (w * depths[:, None, :]).sum(-1).reshape(C, height, width, 1)
    return feats, acc, depth
