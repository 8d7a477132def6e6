"""Which renderer `backend="auto"` uses in this process, decided once by a probe and cached.

gsplat from PyPI ships its CUDA kernels as source and compiles them on first use, which needs nvcc and a GPU.
A Hugging Face Space has no nvcc, and a machine with nvcc but no GPU starts a compile that fails, so "CUDA is
available" is not enough to pick gsplat. Triton (shipped with CUDA builds of torch) compiles its own kernels
at run time without a toolchain, so the triton backend is the GPU renderer where gsplat cannot build.
`renderer_choice()` answers, once per process:

1. no CUDA device here -> the torch (CPU) renderer, without importing gsplat or triton at all (importing
   gsplat alone can start a compile on a machine with nvcc and no GPU);
2. CUDA is here -> import gsplat and rasterize one Gaussian into a 4x4 image on the GPU -> gsplat;
3. else render one Gaussian (forward and backward) through the triton backend on the GPU -> triton;
4. else the torch renderer (on CPU copies of the GPU scene). Every exception in 2 and 3 (a package missing, a
   compile failing, a kernel error) is caught and becomes part of the reason.

The answer and its reason are logged once; the app's Model tab, the CLI's `info` and the Space show them
(editor/runners/gpu_calls.py). In a ZeroGPU Space the probe runs again inside the GPU worker process (where
CUDA is), which reports its own answer back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


LABELS = {
    "gsplat": "gsplat (CUDA)",
    "triton": "triton (GPU kernels compiled at run time)",
    "torch": "torch (CPU rasterizer)",
}


@dataclass(frozen=True)
class RendererChoice:
    """What `auto` renders with in this process ("gsplat", "triton" or "torch"), and why."""

    name: str
    reason: str

    @property
    def gsplat(self) -> bool:
        return self.name == "gsplat"

    def describe(self) -> str:
        return f"{LABELS[self.name]}: {self.reason}"


_PROBE_DEVICE = "cuda"  # where the test Gaussian is rendered (tests point it elsewhere; there is no GPU in CI)
_CHOICE: RendererChoice | None = None
_LOCK = threading.Lock()


def renderer_choice() -> RendererChoice:
    """The cached decision (probing on the first call; thread-safe)."""
    global _CHOICE
    with _LOCK:
        if _CHOICE is None:
            _CHOICE = _probe()
            log.info("renderer for backend='auto': %s", _CHOICE.describe())
        return _CHOICE


def gsplat_usable() -> bool:
    return renderer_choice().gsplat


def reset_renderer_choice() -> None:
    """Forget the cached decision (tests; a process that gained a GPU)."""
    global _CHOICE
    with _LOCK:
        _CHOICE = None


def _why(exc: Exception) -> str:
    """The exception's type and first line (a compiler log can run to pages)."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}".removesuffix(": ")


def _probe() -> RendererChoice:
    if not torch.cuda.is_available():
        return RendererChoice("torch", "no CUDA device in this process (gsplat and triton not imported)")
    try:
        _tiny_gsplat_render()
        return RendererChoice("gsplat", "gsplat imported and rasterized a test Gaussian on the GPU")
    except Exception as exc:  # noqa: BLE001 - whatever stops gsplat (missing, compile error, kernel error)
        gsplat_why = f"gsplat cannot run here ({_why(exc)})"
    try:
        _tiny_triton_render()
        return RendererChoice("triton", f"{gsplat_why}; triton compiled its kernels and rendered a test Gaussian "
                                        "(forward and backward) on the GPU")
    except Exception as exc:  # noqa: BLE001 - whatever stops triton (missing, unsupported GPU, kernel error)
        return RendererChoice("torch", f"{gsplat_why}; triton cannot run here either ({_why(exc)})")


def _test_gaussian(device: torch.device) -> tuple:
    """One Gaussian 2 units in front of one 4x4 camera: raw tensors (means, quats, log-scales, opacity logits,
    colours [1, 3], viewmats [1, 4, 4], Ks [1, 3, 3])."""
    means = torch.tensor([[0.0, 0.0, 2.0]], device=device)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], device=device)
    scales = torch.full((1, 3), 0.5, device=device)
    opacities = torch.ones(1, device=device)
    colors = torch.ones(1, 3, device=device)
    viewmats = torch.eye(4, device=device)[None]
    Ks = torch.tensor([[[4.0, 0.0, 2.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]]], device=device)
    return means, quats, scales, opacities, colors, viewmats, Ks


def _check_render(rgb: torch.Tensor, alpha: torch.Tensor) -> None:
    if rgb.device.type == "cuda":
        torch.cuda.synchronize()
    if not bool(torch.isfinite(rgb).all()) or float(alpha.max()) <= 0.0:
        raise RuntimeError("the test render came back empty or not finite")


def _tiny_gsplat_render() -> None:
    """One Gaussian in front of one 4x4 camera through gsplat's rasterization (raises on any failure)."""
    from gsplat import rasterization

    means, quats, scales, opacities, colors, viewmats, Ks = _test_gaussian(torch.device(_PROBE_DEVICE))
    rendered, alphas, _ = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, 4, 4,
                                        packed=False)
    _check_render(rendered, alphas)


def _tiny_triton_render() -> None:
    """The same Gaussian through the triton backend, forward and backward (both kernels compile here)."""
    from ..camera import Cameras
    from ..scene import GaussianScene
    from .triton_backend import render_triton

    means, quats, scales, opacities, colors, viewmats, Ks = _test_gaussian(torch.device(_PROBE_DEVICE))
    sh0 = (colors - 0.5)[:, None, :].requires_grad_(True)
    scene = GaussianScene(means, quats, torch.log(scales), opacities, sh0, torch.zeros(1, 0, 3, device=sh0.device))
    out = render_triton(scene, Cameras(viewmats, Ks, 4, 4), sh_degree=0)
    out.rgb.sum().backward()
    _check_render(out.rgb.detach(), out.alpha.detach())
    if sh0.grad is None or not bool(torch.isfinite(sh0.grad).all()) or float(sh0.grad.abs().sum()) <= 0.0:
        raise RuntimeError("the test render's backward gave no finite gradient")
