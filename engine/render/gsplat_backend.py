"""CUDA backend: gsplat's `rasterization` with our conventions (same RenderOutput as the CPU backends).

Imported lazily by engine.render.render and only on a CUDA device: importing gsplat's kernels on a machine
without a GPU starts a compile that fails. gsplat takes activated scales/opacities (we store log / logit)
and normalizes the quaternions itself; "RGB+ED" gives the expected depth like our backends.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from .projection import EPS2D, FAR_PLANE, NEAR_PLANE
from .types import RenderOutput


def render_gsplat(
    scene: GaussianScene,
    cameras: Cameras,
    *,
    sh_degree: int,
    background: Tensor | tuple | None = None,
    colors: Tensor | None = None,  # [N, D] or [C, N, D] features instead of SH colour
) -> RenderOutput:
    if scene.device.type != "cuda":
        raise ValueError(f"the gsplat backend needs a scene on a CUDA device, got {scene.device}")
    if scene.dtype != torch.float32:
        raise ValueError(f"the gsplat backend renders float32 scenes, got {scene.dtype}")
    from gsplat import rasterization

    C = len(cameras)
    if colors is None:
        feats, degree = scene.sh, sh_degree  # [N, K, 3] SH coefficients; gsplat adds 0.5 and clamps at 0
    else:
        if colors.shape[-2] != len(scene) or colors.dim() not in (2, 3):
            raise ValueError(f"colors must be [N, D] or [C, N, D] with N={len(scene)}, got {list(colors.shape)}")
        feats, degree = colors.to(scene.dtype), None
    D = 3 if colors is None else feats.shape[-1]
    backgrounds = None
    if background is not None:
        bg = torch.as_tensor(background, dtype=scene.dtype, device=scene.device).reshape(-1)
        backgrounds = bg.expand(C, D).contiguous()
    rendered, alphas, meta = rasterization(
        scene.means, scene.quats, torch.exp(scene.scales), torch.sigmoid(scene.opacities), feats,
        cameras.viewmats, cameras.Ks, int(cameras.width), int(cameras.height),
        near_plane=NEAR_PLANE, far_plane=FAR_PLANE, eps2d=EPS2D, sh_degree=degree, packed=False,
        backgrounds=backgrounds, render_mode="RGB+ED", rasterize_mode="classic",
    )
    return RenderOutput(
        rendered[..., :-1], alphas, rendered[..., -1:],
        {"radii": meta["radii"], "means2d": meta["means2d"], "backend": "gsplat"},
    )
