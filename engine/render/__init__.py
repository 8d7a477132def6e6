"""`render(scene, cameras, ...)`: the single entry point through which masking, editing and the viewer draw.

Backends:
- "gsplat": gsplat's CUDA rasterization (imported lazily, only when CUDA is available);
- "triton": Triton kernels compiled at run time (engine/render/triton_backend.py): a GPU without a compiler;
- "torch": our CPU rasterizer with gsplat's conventions (engine/render/cpu.py);
- "reference": the dense, slow, readable oracle (small scenes only);
- "auto": for a scene on a CUDA device, what the probe chose in this process (one probe, cached:
  engine/render/availability.py): gsplat when it works, else triton when it works, else torch. A torch render
  of a scene on a GPU runs on CPU copies and hands the images back on the scene's device (gradients flow through
  the copies), so a GPU where neither works still renders — more slowly — instead of failing at the first render.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from .projection import project, view_colors
from .reference import rasterize_dense
from .types import RenderOutput

BACKENDS = ("auto", "gsplat", "triton", "torch", "reference")


def _finish(feats: Tensor, alpha: Tensor, acc_depth: Tensor, background: Tensor | None, meta: dict) -> RenderOutput:
    depth = torch.where(alpha > 0, acc_depth / alpha.clamp_min(1e-10), torch.zeros_like(acc_depth))
    if background is not None:
        bg = torch.as_tensor(background, dtype=feats.dtype, device=feats.device)
        feats = feats + (1.0 - alpha) * bg
    return RenderOutput(feats, alpha, depth, meta)


def render(
    scene: GaussianScene,
    cameras: Cameras,
    *,
    sh_degree: int | None = None,
    background: Tensor | tuple | None = None,
    colors: Tensor | None = None,
    backend: str = "auto",
) -> RenderOutput:
    """Render `scene` from every camera.

    sh_degree: SH degree to evaluate (default: the scene's); background [D]: added where alpha < 1;
    colors [N, D] or [C, N, D]: view-independent features composited instead of the SH colour (no +0.5, no
    clamp) — used to render masks and label features, and to measure per-Gaussian visibility by autograd.
    Differentiable with respect to every raw parameter and to `colors`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        from .availability import renderer_choice

        backend = renderer_choice().name if scene.device.type == "cuda" else "torch"
    if sh_degree is None:
        sh_degree = scene.sh_degree
    if not 0 <= sh_degree <= scene.sh_degree:
        raise ValueError(f"sh_degree must be in [0, {scene.sh_degree}], got {sh_degree}")
    cameras = cameras.to(scene.device, scene.dtype)
    if backend == "gsplat":
        from .gsplat_backend import render_gsplat  # lazy: importing gsplat without CUDA triggers a compile

        return render_gsplat(scene, cameras, sh_degree=sh_degree, background=background, colors=colors)
    if backend == "triton":
        from .triton_backend import render_triton  # lazy: imports triton

        return render_triton(scene, cameras, sh_degree=sh_degree, background=background, colors=colors)
    if backend == "torch":
        try:
            from .cpu import render_cpu
        except ImportError:
            render_cpu = None
        if render_cpu is not None:
            if scene.device.type == "cpu":
                return render_cpu(scene, cameras, sh_degree=sh_degree, background=background, colors=colors)
            return _on_cpu(render_cpu, scene, cameras, sh_degree=sh_degree, background=background, colors=colors)
    proj = project(
        scene.means, scene.quats, scene.scales, scene.opacities, cameras.viewmats, cameras.Ks,
        cameras.width, cameras.height,
    )
    feats = _resolve_colors(scene, cameras, sh_degree, colors)
    out, alpha, acc_depth = rasterize_dense(proj, feats, cameras.width, cameras.height)
    return _finish(out, alpha, acc_depth, background, {"radii": proj.radii, "means2d": proj.means2d, "backend": "reference"})


def _on_cpu(render_fn, scene: GaussianScene, cameras: Cameras, *, sh_degree: int, background, colors) -> RenderOutput:
    """`render_fn` (a CPU renderer) on CPU copies of a scene held on another device; rgb, alpha and depth come
    back on the scene's device (differentiable through the copies); meta stays on the CPU (the densifiers move
    what they read)."""
    device = scene.device
    if isinstance(background, Tensor):
        background = background.to("cpu")
    out = render_fn(scene.to("cpu"), cameras.to("cpu", scene.dtype), sh_degree=sh_degree, background=background,
                    colors=None if colors is None else colors.to("cpu"))
    return RenderOutput(out.rgb.to(device), out.alpha.to(device), out.depth.to(device), out.meta)


def _resolve_colors(scene: GaussianScene, cameras: Cameras, sh_degree: int, colors: Tensor | None) -> Tensor:
    """[C, N, D] features for compositing: the override if given, else view-dependent SH colour."""
    if colors is None:
        return view_colors(scene.sh, sh_degree, scene.means, cameras.viewmats)
    if colors.dim() == 2:
        colors = colors[None].expand(len(cameras), -1, -1)
    if colors.shape[:2] != (len(cameras), len(scene)):
        raise ValueError(f"colors must be [N, D] or [C, N, D] with N={len(scene)}, got {list(colors.shape)}")
    return colors
