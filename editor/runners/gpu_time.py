"""How much GPU time a Space's job asks ZeroGPU for: a cost model per step, the duration functions spaces.GPU
calls with the job's arguments, and the refusal of a job that would not fit in one call.

`duration` (ZeroGPU's default is 60 s; quota is GPU minutes per day) is a function of the inputs:
`edit_duration` / `generate_duration` from `estimate_edit_seconds` / `estimate_generate_seconds` (see COSTS); a
job whose estimate exceeds GPU_MAX_DURATION_S is refused before it runs, saying what to lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from . import VIEW_SIZE
from .gpu_calls import expected_gpu_renderer

GPU_MAX_DURATION_S = 120
"""The longest GPU call this app asks ZeroGPU for; an estimate above it is refused before anything runs. Kept
well under a day's free quota so that a visitor gets several edits, not one."""


SPACE_EDIT_STEPS = 100  # the Edit panel's default steps in Space mode (≈ 55 s estimated for SD 1.5, 256 px)


SPACE_GENERATE_STEPS = 150  # the Scene panel's default generation steps in Space mode (≈ 35 s estimated)


@dataclass(frozen=True)
class GpuCosts:
    """Per-step costs the duration estimate is built from. NOT measured on a Space's GPU (no GPU was available
    to this work); where each figure comes from:

    - model_step_s: the guidance part of one step (VAE encode, UNet, backward through them). 0.06 s for an SD
      1.5-family model is the project's target for a 512² SDS step on an H100 (bench/edit.py's goal; the README's
      "On a GPU cluster"); the loss resizes every render to the model's native 512², so it does not grow with
      the render resolution. DDS runs the UNet for two prompts (x2); RoMaP adds anchor images (x1.3); the variants
      by their UNet calls per step (NFSD's extra negative-prompt pass x1.5, ISM's inversion step x3, DreamCatalyst
      like DDS x2, LUSD up to its redraws x1.5; CSD/ESD as SDS): estimates from the formulas, not timed. The
      closed-form prior has no network: a few ms.
    - render: forward + backward of one view, per megapixel and per million Gaussians. The torch (CPU)
      rasterizer's figures are measured on this project's 2-core CI machine (the default robot, 33,839
      Gaussians: 0.15 s at 128², 0.20 s at 256²); it is what a ZeroGPU Space renders with, since gsplat from PyPI
      cannot compile there. gsplat's are an estimate (two orders of magnitude faster); triton's (Triton kernels,
      no compiler needed) are gsplat's times 3, the issue's target, until a GPU run measures them.
    - call_overhead_s: starting the GPU worker, moving the model to the GPU, the first steps' warm-up.
    - safety: the steps' estimate is multiplied by this (ZeroGPU ends a call that outlives its duration).
    """

    model_step_s: dict = field(default_factory=lambda: {"diffusers": 0.06, "closed-form": 0.003})
    method_factor: dict = field(default_factory=lambda: {
        "sds": 1.0, "dds": 2.0, "romap": 1.3, "nfsd": 1.5, "csd": 1.0, "ism": 3.0, "esd": 1.0,
        "dreamcatalyst": 2.0, "lusd": 1.5,
    })
    render_s_per_mpix: dict = field(default_factory=lambda: {"torch": 0.9, "gsplat": 0.02, "triton": 0.06})
    render_s_per_mgauss: dict = field(default_factory=lambda: {"torch": 4.0, "gsplat": 0.05, "triton": 0.15})
    call_overhead_s: dict = field(default_factory=lambda: {"diffusers": 15.0, "closed-form": 3.0})
    safety: float = 1.5


COSTS = GpuCosts()


def _model_kind(spec: str) -> str:
    from engine.guidance import parse_model_spec

    try:
        parsed = parse_model_spec(spec)
    except ValueError:
        return "diffusers"
    return "closed-form" if parsed.is_closed_form or parsed.kind not in ("hub", "local") else "diffusers"


def _render_s(renderer: str, pixels: float, gaussians: float) -> float:
    name = renderer if renderer in COSTS.render_s_per_mpix else "torch"
    return COSTS.render_s_per_mpix[name] * pixels / 1e6 + COSTS.render_s_per_mgauss[name] * gaussians / 1e6


def estimate_edit_seconds(num_gaussians: int, config, renderer: str | None = None) -> float:
    """GPU seconds to request for an edit: overhead + safety x steps x (model step + the step's views rendered
    forward and backward at resolution² + a share of a 256² preview every preview_every steps)."""
    renderer = renderer or expected_gpu_renderer()
    kind = _model_kind(config.model)
    step = COSTS.model_step_s[kind] * COSTS.method_factor.get(config.method, 1.0)
    step += _render_s(renderer, int(config.batch_size) * config.resolution ** 2, num_gaussians)
    if config.preview_every:
        step += 0.5 * _render_s(renderer, VIEW_SIZE ** 2, num_gaussians) / max(int(config.preview_every), 1)
    return COSTS.call_overhead_s[kind] + COSTS.safety * int(config.steps) * step


def estimate_generate_seconds(config, num_start: int | None = None, renderer: str | None = None) -> float:
    """GPU seconds to request for a generation: as `estimate_edit_seconds`, at the final resolution and with the
    Gaussian count doubled (densification grows it)."""
    renderer = renderer or expected_gpu_renderer()
    kind = _model_kind(config.model)
    gaussians = 2 * (num_start if num_start is not None else int(config.num_gaussians))
    step = COSTS.model_step_s[kind] * COSTS.method_factor.get(config.method, 1.0)
    step += _render_s(renderer, int(config.batch_size) * config.resolution ** 2, gaussians)
    if config.preview_every:
        step += 0.5 * _render_s(renderer, int(config.preview_resolution) ** 2, gaussians) / max(int(config.preview_every), 1)
    return COSTS.call_overhead_s[kind] + COSTS.safety * int(config.steps) * step


def check_gpu_time(seconds: float, steps: int, what: str) -> int:
    """The duration to request (whole seconds), or ValueError when `seconds` exceeds GPU_MAX_DURATION_S."""
    if seconds > GPU_MAX_DURATION_S:
        fits = max(1, int(steps * GPU_MAX_DURATION_S / seconds))
        raise ValueError(
            f"this {what} would need about {math.ceil(seconds)} s of GPU time, more than the {GPU_MAX_DURATION_S} s "
            f"one GPU call may use here: lower Steps (about {fits} fit at these settings) or the render resolution")
    return max(1, math.ceil(seconds))


def edit_duration(job, cancel_path=None) -> int:
    """spaces.GPU's `duration` for run_edit_on_gpu (called with the same arguments), capped at the maximum."""
    return min(GPU_MAX_DURATION_S, max(1, math.ceil(estimate_edit_seconds(len(job.scene), job.config))))


def generate_duration(job, cancel_path=None) -> int:
    """spaces.GPU's `duration` for run_generate_on_gpu, capped at the maximum."""
    seconds = estimate_generate_seconds(job.config, None if job.initial is None else len(job.initial))
    return min(GPU_MAX_DURATION_S, max(1, math.ceil(seconds)))


def gpu_wrap(fn: Callable, duration: Callable | int | None = None) -> Callable:
    """`spaces.GPU(duration=...)(fn)` when the `spaces` package is importable, else `fn` unchanged (outside
    ZeroGPU hardware the real package returns `fn` unchanged too)."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)
