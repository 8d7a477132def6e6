"""Which renderer `backend="auto"` uses in this process, decided once by a probe and cached.

gsplat from PyPI ships its CUDA kernels as source and compiles them on first use, which needs nvcc and a GPU.
A Hugging Face Space has no nvcc, and a machine with nvcc but no GPU starts a compile that fails, so "CUDA is
available" is not enough to pick gsplat. `renderer_choice()` answers, once per process:

1. no CUDA device here -> the torch (CPU) renderer, without importing gsplat at all (that import alone can start
   a compile on a machine with nvcc and no GPU);
2. CUDA is here -> import gsplat and rasterize one Gaussian into a 4x4 image on the GPU; any exception (the
   package missing, its compile failing, a kernel error) is caught and becomes the reason for the fallback.

The answer and its reason are logged once; the app's Model tab shows them (editor/model_panel.py). In a ZeroGPU
Space the probe runs again inside the GPU worker process (where CUDA is), which reports its own answer back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RendererChoice:
    """What `auto` renders with in this process, and why."""

    gsplat: bool
    reason: str

    @property
    def name(self) -> str:
        return "gsplat" if self.gsplat else "torch"

    def describe(self) -> str:
        label = "gsplat (CUDA)" if self.gsplat else "torch (CPU rasterizer)"
        return f"{label}: {self.reason}"


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


def _probe() -> RendererChoice:
    if not torch.cuda.is_available():
        return RendererChoice(False, "no CUDA device in this process (gsplat not imported)")
    try:
        _tiny_gsplat_render()
    except Exception as exc:  # noqa: BLE001 - whatever stops gsplat (missing, compile error, kernel error)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return RendererChoice(False, f"gsplat cannot run here ({type(exc).__name__}: {first})".replace(": )", ")"))
    return RendererChoice(True, "gsplat imported and rasterized a test Gaussian on the GPU")


def _tiny_gsplat_render() -> None:
    """One Gaussian in front of one 4x4 camera through gsplat's rasterization (raises on any failure)."""
    from gsplat import rasterization

    device = torch.device(_PROBE_DEVICE)
    means = torch.tensor([[0.0, 0.0, 2.0]], device=device)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], device=device)
    scales = torch.full((1, 3), 0.5, device=device)
    opacities = torch.ones(1, device=device)
    colors = torch.ones(1, 3, device=device)
    viewmats = torch.eye(4, device=device)[None]
    Ks = torch.tensor([[[4.0, 0.0, 2.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]]], device=device)
    rendered, alphas, _ = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, 4, 4,
                                        packed=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    if not bool(torch.isfinite(rendered).all()) or float(alphas.max()) <= 0.0:
        raise RuntimeError("the test render came back empty or not finite")
