"""One prepared GPU check: gsplat and triton agreement, render timings, SD-1.5-sized edit steps, a masked edit.

    python bench/gpu_check.py --out $OUT/gpu_check.json     # on a CUDA machine, < 8 minutes on an H100/H200
    python bench/gpu_check.py --quick                       # the same code at toy sizes on the CPU (< 60 s)
    python bench/gpu_check.py --backends triton             # only the triton backend (no gsplat compile)

Sections (each timed, each guarded: a failing section records {"error": ...} and the others still run; cases
inside a section are guarded the same way, so an out-of-memory case is recorded and the next one runs):

1. agreement: the gsplat backend against our CPU renderer (backend="torch" on a CPU copy) on random scenes of
   10k / 150k Gaussians at 256x256 and on the bundled robot, SH degree 0 and 3, with and without a background:
   max / mean |difference| of rgb and alpha, and of the gradient of every raw parameter of a fixed random linear
   function of (rgb, alpha); a gradient's `rel` is max|g - g_cpu| / max|g_cpu|. Targets: rgb <= 2e-3,
   gradients <= 1e-3 relative.
2. timing: gsplat forward and forward+backward at 150k / 1M / 3M Gaussians, 512x512 and 1920x1080, one view
   (median ms after warm-up, peak GPU memory).

The triton backend (engine/render/triton_backend.py: Triton kernels, no compiler toolchain) is measured beside
gsplat with the same code: agreement["triton"] holds its cases against the same CPU baseline, timing's keys
"triton_<case>" its timings and timing["triton_over_gsplat"] the ratios (target: <= 3 at 1M Gaussians, 512²,
forward+backward), sd_step's "sds_batch1_triton" an edit step drawn with it. --backends picks which of gsplat and
triton run (both by default; a missing package or a failed compile is recorded per case, the rest still runs).
3. sd_step: a random-weight pipeline with Stable Diffusion 1.5's architecture (bench/guidance.random_sd_model:
   UNet2DConditionModel / AutoencoderKL / CLIPTextModel with SD 1.5's config values, nothing downloaded), fp16;
   SDS, DDS and RoMaP steps at 512x512, batch 1 and 4, on a 1M-Gaussian scene through the real run_edit loop
   (bench/edit.time_edit), split into render / encode / unet / backward / optimizer / other, peak memory.
   Targets: SDS batch 1 <= 60 ms per step, peak <= 12 GB.
4. masked_edit: a 200-step masked SDS edit of the robot's head end to end: unmasked Gaussians bit-identical,
   nothing NaN.
5. sd3_step: masked rectified-flow SDS steps with a random-weight SD3-medium-architecture model (transformer and
   VAE config values, random text embeddings of SD3's shapes), bf16, at 512x512 and 1024x1024: ms, peak memory.

--quick: the same functions at toy sizes on the CPU, one torch thread. The measured backend is then the dense reference
rasterizer (backend="reference", an independent oracle) instead of gsplat, timings use the torch backend, the
SD pipeline is the tiny random one, the edit has 20 steps. tests/test_gpu_check.py runs it.

Without CUDA and without --quick the script prints {"cuda_available": false, ...} and exits 0. gsplat is only
imported (by engine.render) when CUDA is available. With --out the JSON is rewritten after every section, so
a run stopped by a time limit still leaves the sections it finished.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.camera import Cameras, framing_radius, orbit_cameras  # noqa: E402
from engine.render import render  # noqa: E402
from engine.scene import GaussianScene, SceneError, random_scene  # noqa: E402

PARAMS = ("means", "quats", "scales", "opacities", "sh0", "shN")
METHODS = ("sds", "dds", "romap")
SECTIONS = ("agreement", "timing", "sd_step", "masked_edit", "sd3_step")
TARGETS = {"rgb_max_abs": 2e-3, "grad_rel": 1e-3, "sds_batch1_ms": 60.0, "sds_batch1_peak_gb": 12.0}
BACKGROUND = (0.2, 0.3, 0.4)


@dataclass
class Plan:
    """The sizes of one run: `gpu_plan()` on CUDA, `quick_plan()` on the CPU."""

    quick: bool
    device: str
    candidate: str  # the backend under test: gsplat, or the dense reference in --quick
    agree_gaussians: tuple[int, ...]
    agree_size: int  # square renders, two views
    robot_stride: int  # agreement on every k-th robot Gaussian (the reference backend is dense)
    timing_backend: str
    timing_gaussians: tuple[int, ...]
    timing_sizes: tuple[tuple[int, int], ...]  # (width, height)
    timing_reps: int
    timing_warmup: int
    sd_full_size: bool
    sd_dtype: str
    sd_gaussians: int
    sd_resolution: int
    sd_batches: tuple[int, ...]
    sd_steps: int
    sd_warmup: int
    edit_steps: int
    edit_resolution: int
    budget_s: dict  # per section: cases that would start after this many seconds are skipped
    also: tuple[str, ...] = ()  # backends measured beside `candidate` with the same cases (GPU: triton)


def gpu_plan() -> Plan:
    return Plan(
        quick=False, device="cuda", candidate="gsplat", agree_gaussians=(10_000, 150_000), agree_size=256,
        robot_stride=1, timing_backend="gsplat", timing_gaussians=(150_000, 1_000_000, 3_000_000),
        timing_sizes=((512, 512), (1920, 1080)), timing_reps=5, timing_warmup=2, sd_full_size=True,
        sd_dtype="float16", sd_gaussians=1_000_000, sd_resolution=512, sd_batches=(1, 4), sd_steps=5, sd_warmup=2,
        edit_steps=200, edit_resolution=512,
        # per backend for agreement and timing: 2 x 60 + 2 x 60 + 130 + 90 s, about 8 minutes at most
        budget_s={"agreement": 60.0, "timing": 60.0, "sd_step": 130.0, "masked_edit": 90.0}, also=("triton",),
    )


def with_backends(plan: Plan, backends: list[str]) -> Plan:
    """`plan` measuring only `backends` (a subset of gsplat and triton; GPU plans only)."""
    from dataclasses import replace

    if plan.quick or not backends:
        return plan
    first, rest = backends[0], tuple(b for b in backends[1:] if b != backends[0])
    return replace(plan, candidate=first, timing_backend=first, also=rest)


def quick_plan() -> Plan:
    return Plan(
        quick=True, device="cpu", candidate="reference", agree_gaussians=(100, 300), agree_size=32,
        robot_stride=100, timing_backend="torch", timing_gaussians=(500, 2000), timing_sizes=((32, 32), (48, 27)),
        timing_reps=2, timing_warmup=1, sd_full_size=False, sd_dtype="float32", sd_gaussians=2000,
        sd_resolution=32, sd_batches=(1, 4), sd_steps=1, sd_warmup=1, edit_steps=20, edit_resolution=32,
        budget_s={"agreement": 300.0, "timing": 300.0, "sd_step": 300.0, "masked_edit": 300.0},  # never binding
    )


# ---------------------------------------------------------------------------------------------- helpers


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def _free(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _error(exc: BaseException) -> dict:
    """What a failed section or case records: the exception, the last frames, and whether it was OOM."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    entry = {"error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": "".join(frames[-3:])[-2000:]}
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(exc, oom) or "out of memory" in str(exc).lower():
        entry["out_of_memory"] = True
    return entry


def guarded(fn, *args, free_on="cpu", **kwargs) -> dict:
    """fn(*args, **kwargs) -> dict, with its wall time; an exception becomes {"error": ...} (memory freed)."""
    start = time.perf_counter()
    try:
        result = dict(fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - a one-shot GPU run must record every failure and go on
        result = _error(exc)
    if "error" in result:
        _free(free_on)  # after the except block: the exception's frames no longer hold the failed case's tensors
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


class Budget:
    """Seconds left to a section: cases that would start after the deadline are recorded as skipped."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = float(seconds), time.perf_counter()

    def spent(self) -> bool:
        return time.perf_counter() - self.start > self.seconds

    def skipped(self) -> dict:
        return {"skipped": f"section time budget of {self.seconds:.0f} s spent"}


def _stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a.detach().double().cpu() - b.detach().double().cpu()).abs()
    if d.numel() == 0:
        return {"max_abs": 0.0, "mean_abs": 0.0}
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}


def _grad_stats(g: torch.Tensor | None, ref: torch.Tensor | None) -> dict:
    """max / mean |g - ref| and rel = max|g - ref| / max|ref|; a missing gradient counts as zeros."""
    if ref is None and g is None:
        return {"max_abs": 0.0, "mean_abs": 0.0, "rel": 0.0, "ref_max_abs": 0.0}
    shape = (ref if ref is not None else g).shape
    g = torch.zeros(shape) if g is None else g
    ref = torch.zeros(shape) if ref is None else ref
    entry = _stats(g, ref)
    ref_max = float(ref.detach().double().abs().max()) if ref.numel() else 0.0
    entry["ref_max_abs"] = ref_max
    entry["rel"] = entry["max_abs"] / ref_max if ref_max > 0 else (0.0 if entry["max_abs"] == 0 else math.inf)
    if ref_max > 0:  # how many entries miss the target: one flipped culling decision vs a systematic error
        diff = (g.detach().double().cpu() - ref.detach().double().cpu()).abs()
        entry["over_target_fraction"] = float((diff > TARGETS["grad_rel"] * ref_max).double().mean())
    return entry


def view_pair(center, radius: float, size: int, *, up=(0.0, 0.0, 1.0), fov_y_deg: float = 40.0) -> Cameras:
    """Two views from different sides of `center` at `radius`."""
    return orbit_cameras(torch.as_tensor(center, dtype=torch.float64), radius, [25.0, 160.0], [20.0, -25.0],
                         width=size, height=size, fov_y_deg=fov_y_deg, up=up)


def density_scales(num: int, extent: float = 1.0) -> tuple[float, float]:
    """A scale range for `num` random Gaussians in a cube of half-size `extent`: 0.2-1x the mean spacing."""
    spacing = 2 * extent / num ** (1 / 3)
    return 0.2 * spacing, 1.0 * spacing


def robot() -> tuple[GaussianScene, torch.Tensor, list[str], tuple]:
    """(scene, part_ids [N], names, up) of the bundled default scene."""
    from assets.default_scene import load_default_scene, load_default_scene_info

    scene, part_ids, names = load_default_scene()
    up = tuple(float(u) for u in load_default_scene_info().get("up", (0.0, 0.0, 1.0)))
    return scene.to(dtype=torch.float32), torch.as_tensor(part_ids).long(), list(names), up


def robot_views(scene: GaussianScene, size: int, up) -> Cameras:
    means = scene.means.detach().double().cpu()
    center = means.mean(0)
    half = float((means - center).norm(dim=-1).quantile(0.99))
    return view_pair(center, framing_radius(half, 40.0), size, up=up)


def with_degree(scene: GaussianScene, degree: int, seed: int) -> GaussianScene:
    """The scene at SH `degree`: truncated, or padded with small random coefficients (so they matter)."""
    have = scene.sh_degree
    out = scene.with_sh_degree(degree)
    if degree > have:
        k_have = (have + 1) ** 2 - 1
        g = torch.Generator().manual_seed(seed)
        extra = 0.1 * torch.randn(len(scene), out.shN.shape[1] - k_have, 3, generator=g, dtype=out.shN.dtype)
        out = out.replace(shN=torch.cat([out.shN[:, :k_have], extra.to(out.shN.device)], dim=1))
    return out


# ---------------------------------------------------------------------------------------------- 1. agreement


def _forward_backward(scene: GaussianScene, cameras: Cameras, backend: str, background, weights) -> tuple:
    """Render with grad-requiring leaves, backpropagate sum(w_rgb * rgb) + sum(w_alpha * alpha)."""
    leaves = {name: t.detach().clone().requires_grad_(True) for name, t in scene.items()}
    out = render(GaussianScene(**leaves), cameras, background=background, backend=backend)
    w_rgb, w_alpha = (w.to(out.rgb.device, out.rgb.dtype) for w in weights)
    ((out.rgb * w_rgb).sum() + (out.alpha * w_alpha).sum()).backward()
    grads = {name: None if leaf.grad is None else leaf.grad.detach().cpu() for name, leaf in leaves.items()}
    return out, grads


def agreement_case(scene: GaussianScene, cameras: Cameras, plan: Plan, *, background, seed: int = 0,
                   candidate: str | None = None) -> dict:
    """The candidate backend (default plan.candidate) on plan.device against backend="torch" on a CPU copy;
    differences and pass/fail."""
    candidate = candidate or plan.candidate
    scene, cameras = scene.to("cpu", torch.float32).detach(), cameras.to("cpu", torch.float32)
    g = torch.Generator().manual_seed(seed)
    C, H, W = len(cameras), int(cameras.height), int(cameras.width)
    weights = (torch.randn(C, H, W, 3, generator=g), torch.randn(C, H, W, 1, generator=g))
    device = torch.device(plan.device)
    _sync(device)
    t0 = time.perf_counter()
    cand, cand_grads = _forward_backward(scene.to(device), cameras.to(device), candidate, background, weights)
    _sync(device)
    t1 = time.perf_counter()
    base, base_grads = _forward_backward(scene, cameras, "torch", background, weights)
    t2 = time.perf_counter()
    if cand.meta.get("backend") != candidate:
        raise RuntimeError(f"asked for backend {candidate!r}, rendered with {cand.meta.get('backend')!r}")
    entry = {
        "gaussians": len(scene), "sh_degree": scene.sh_degree, "background": background is not None,
        "size": [W, H], "views": C,
        "rgb": _stats(cand.rgb, base.rgb), "alpha": _stats(cand.alpha, base.alpha),
        "alpha_mean": float(base.alpha.detach().mean()),
        "grads": {name: _grad_stats(cand_grads[name], base_grads[name])
                  for name in PARAMS if base_grads[name] is not None and base_grads[name].numel()},
        f"{candidate}_s": round(t1 - t0, 3), "torch_cpu_s": round(t2 - t1, 3),
    }
    covered = base.alpha.detach() > 0.5
    if covered.any():
        depth = _stats(cand.depth.detach().cpu()[covered], base.depth.detach()[covered])
        entry["depth_covered_max_abs"] = depth["max_abs"]
    r_cand, r_base = cand.meta.get("radii"), base.meta.get("radii")
    if isinstance(r_cand, torch.Tensor) and isinstance(r_base, torch.Tensor) and r_cand.shape == r_base.shape:
        entry["radii_mismatch_fraction"] = float((r_cand.cpu() != r_base.cpu()).float().mean())
    entry["rgb_pass"] = entry["rgb"]["max_abs"] <= TARGETS["rgb_max_abs"]
    entry["grads_pass"] = all(v["rel"] <= TARGETS["grad_rel"] for v in entry["grads"].values())
    entry["pass"] = entry["rgb_pass"] and entry["grads_pass"]
    return entry


def first_call(plan: Plan, candidate: str | None = None) -> dict:
    """One tiny render + backward with the candidate backend: gsplat's import (and any kernel JIT compile)."""
    scene = random_scene(64, seed=0).to(plan.device)
    cams = view_pair((0.0, 0.0, 0.0), 3.6, 16).to(plan.device, torch.float32)
    out, _ = _forward_backward(scene, cams, candidate or plan.candidate, None,
                               (torch.ones(2, 16, 16, 3), torch.ones(2, 16, 16, 1)))
    _sync(plan.device)
    return {"backend": out.meta.get("backend")}


def agreement(plan: Plan) -> dict:
    """The candidate's cases; each backend in plan.also gets the same cases (and its own budget) under its name."""
    section = agreement_of(plan, plan.candidate)
    for backend in plan.also:
        section[backend] = agreement_of(plan, backend)
    return section


def agreement_of(plan: Plan, candidate: str) -> dict:
    first = guarded(first_call, plan, candidate, free_on=plan.device)  # outside the budget: a JIT compile takes minutes
    budget = Budget(plan.budget_s["agreement"])
    cases: dict[str, dict] = {}
    scenes = {}
    for n in plan.agree_gaussians:
        for degree in (0, 3):
            scenes[f"random_{n}_sh{degree}"] = lambda n=n, degree=degree: (
                random_scene(n, sh_degree=degree, seed=n + degree, scale_range=density_scales(n)),
                view_pair((0.0, 0.0, 0.0), 3.6, plan.agree_size))
    for degree in (0, 3):
        def robot_case(degree=degree):
            scene, _, _, up = robot()
            if plan.robot_stride > 1:
                scene = scene.subset(torch.arange(0, len(scene), plan.robot_stride))
            return with_degree(scene, degree, seed=degree), robot_views(scene, plan.agree_size, up)
        scenes[f"robot_sh{degree}"] = robot_case
    for name, make in scenes.items():
        for bg in (None, BACKGROUND):
            key = f"{name}_{'bg' if bg is not None else 'nobg'}"
            if budget.spent():
                cases[key] = budget.skipped()
                continue
            cases[key] = guarded(lambda make=make, bg=bg: agreement_case(*make(), plan, background=bg,
                                                                         candidate=candidate), free_on=plan.device)
    ran = [c for c in cases.values() if "pass" in c]
    return {
        "candidate": candidate, "baseline": "torch (CPU copy)", "first_call": first,
        "robot": {"stride": plan.robot_stride, "note": "the bundled robot is stored at SH degree 1: sh0 truncates "
                  "it, sh3 pads it with 0.1*randn coefficients; stride k keeps every k-th Gaussian"},
        "targets": {
            "rgb_max_abs": TARGETS["rgb_max_abs"], "grad_rel": TARGETS["grad_rel"]},
        "cases": cases,
        "worst": {
            "rgb_max_abs": max((c["rgb"]["max_abs"] for c in ran), default=None),
            "alpha_max_abs": max((c["alpha"]["max_abs"] for c in ran), default=None),
            "grad_rel": max((v["rel"] for c in ran for v in c["grads"].values()), default=None),
        },
        "pass": bool(ran) and len(ran) == len(cases) and all(c["pass"] for c in ran),
    }


# ---------------------------------------------------------------------------------------------- 2. timing


def time_render(scene: GaussianScene, camera: Cameras, backend: str, *, backward: bool, reps: int, warmup: int,
                device) -> dict:
    """Median ms of render (+ backward of mean rgb + mean alpha) over `reps` after `warmup`, peak memory."""
    leaves = {name: t.detach().clone().requires_grad_(backward) for name, t in scene.items()}
    live = GaussianScene(**leaves)
    times = []
    _reset_peak(device)
    for i in range(warmup + reps):
        _sync(device)
        t0 = time.perf_counter()
        if backward:
            out = render(live, camera, backend=backend)
            (out.rgb.mean() + out.alpha.mean()).backward()
        else:
            with torch.no_grad():
                out = render(live, camera, backend=backend)
        _sync(device)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - t0))
        for leaf in leaves.values():
            leaf.grad = None
        del out
    return {"ms_median": round(statistics.median(times), 3), "ms_min": round(min(times), 3),
            "reps": reps, "peak_gpu_mem_gb": _peak_gb(device)}


def timing(plan: Plan) -> dict:
    """Every case for plan.timing_backend (key "<n>_<w>x<h>_<mode>") and, interleaved, for each backend in
    plan.also ("<backend>_<key>"), with the budget scaled by the number of backends; ratios to the first."""
    backends = (plan.timing_backend, *plan.also)
    budget = Budget(plan.budget_s["timing"] * len(backends))
    device = torch.device(plan.device)
    cases: dict[str, dict] = {}
    for n in plan.timing_gaussians:
        scene = None
        for w, h in plan.timing_sizes:
            for backward in (False, True):
                for backend in backends:
                    key = f"{n}_{w}x{h}_{'fwd_bwd' if backward else 'fwd'}"
                    key = key if backend == plan.timing_backend else f"{backend}_{key}"
                    if budget.spent():
                        cases[key] = budget.skipped()
                        continue
                    if scene is None:
                        scene = random_scene(n, sh_degree=3, seed=1, scale_range=density_scales(n)).to(device)
                    camera = orbit_cameras(torch.zeros(3, dtype=torch.float64), 3.6, [30.0], [20.0], width=w,
                                           height=h, fov_y_deg=40.0).to(device, torch.float32)
                    cases[key] = guarded(time_render, scene, camera, backend, backward=backward,
                                         reps=plan.timing_reps, warmup=plan.timing_warmup, device=device,
                                         free_on=device)
        del scene
        _free(device)
    section = {"backend": plan.timing_backend, "sh_degree": 3, "views": 1, "cases": cases}
    for backend in plan.also:
        section[f"{backend}_over_{plan.timing_backend}"] = ratios(cases, backend)
    return section


def ratios(cases: dict, backend: str) -> dict:
    """ms_median of `backend`'s case / the first backend's, for the cases both measured."""
    out = {}
    for key, case in cases.items():
        other = cases.get(f"{backend}_{key}", {})
        if "ms_median" in case and "ms_median" in other and case["ms_median"] > 0:
            out[key] = round(other["ms_median"] / case["ms_median"], 3)
    return out


# ---------------------------------------------------------------------------------------------- 3. SD steps

_MODELS: dict = {}


def sd_model(plan: Plan):
    """The random-weight SD-1.5-architecture model (--quick: the tiny one), built once per run."""
    key = (plan.sd_full_size, plan.device, plan.sd_dtype)
    if key not in _MODELS:
        from bench.guidance import random_sd_model

        _MODELS.clear()
        device, dtype = torch.device(plan.device), getattr(torch, plan.sd_dtype)
        try:  # initialise the weights on the GPU: SD 1.5's 1B random parameters take long on the CPU
            with device:
                model = random_sd_model(full_size=plan.sd_full_size, device=device, dtype=dtype)
            model.built_on = str(device)
        except Exception as exc:  # noqa: BLE001 - a module that insists on CPU tensors: build there, then move
            _free(device)
            model = random_sd_model(full_size=plan.sd_full_size, device=device, dtype=dtype)
            model.built_on = f"cpu ({type(exc).__name__} on {device}: {str(exc)[:200]})"
        _MODELS[key] = model
    return _MODELS[key]


def auto_renderer(device: str) -> str:
    """What run_edit's render_backend="auto" draws with for a scene on `device` (on CUDA a gsplat that fails
    its probe falls back to the CPU renderer: the timings then are not gsplat's)."""
    if torch.device(device).type != "cuda":
        return "torch (CPU rasterizer): the scene is on the CPU"
    from engine.render.availability import renderer_choice

    return renderer_choice().describe()


class auto_backend_forced:
    """Within the block, backend="auto" draws a CUDA scene with `backend` (the probe's cached answer is replaced,
    then restored): run_edit has no backend argument in bench/edit.time_edit."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def __enter__(self):
        from engine.render import availability

        self.saved = availability.renderer_choice()
        availability._CHOICE = availability.RendererChoice(self.backend, "forced by bench/gpu_check.py")

    def __exit__(self, *exc):
        from engine.render import availability

        availability._CHOICE = self.saved


def sd_step(plan: Plan) -> dict:
    from bench.edit import time_edit

    budget = Budget(plan.budget_s["sd_step"])
    device = torch.device(plan.device)
    t0 = time.perf_counter()
    model = sd_model(plan)
    build_s = round(time.perf_counter() - t0, 3)
    n = plan.sd_gaussians
    scene = random_scene(n, sh_degree=3, seed=0, scale_range=density_scales(n)).to(device)
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(n, generator=g) < 0.1).float()
    mask[scene.means[:, 0].cpu() > 0.0] = 0.0  # a spatially coherent "part": half of a 10% sample
    cases: dict[str, dict] = {}
    for method in METHODS:
        for batch in plan.sd_batches:
            key = f"{method}_batch{batch}"
            if budget.spent():
                cases[key] = budget.skipped()
                continue
            cases[key] = guarded(time_edit, scene, mask.to(device), model, method, resolution=plan.sd_resolution,
                                 steps=plan.sd_steps, warmup=plan.sd_warmup, batch_size=batch, free_on=device)
            _free(device)
    for backend in plan.also:  # the same SDS step with "auto" drawing through another backend
        key = f"sds_batch1_{backend}"
        if budget.spent():
            cases[key] = budget.skipped()
            continue
        with auto_backend_forced(backend):
            cases[key] = guarded(time_edit, scene, mask.to(device), model, "sds", resolution=plan.sd_resolution,
                                 steps=plan.sd_steps, warmup=plan.sd_warmup, batch_size=1, free_on=device)
        _free(device)
    sds = cases.get("sds_batch1", {})
    ms, peak = sds.get("ms_per_step"), sds.get("peak_gpu_mem_gb")
    return {
        "renderer": auto_renderer(plan.device), "model": model.name, "built_on": getattr(model, "built_on", None),
        "dtype": plan.sd_dtype, "resolution": plan.sd_resolution, "gaussians": n,
        "masked": int((mask > 0.5).sum()), "model_build_s": build_s, "timed_steps": plan.sd_steps,
        "warmup_steps": plan.sd_warmup, "cases": cases,
        "targets": {"sds_batch1_ms": TARGETS["sds_batch1_ms"], "sds_batch1_peak_gb": TARGETS["sds_batch1_peak_gb"]},
        "targets_apply": not plan.quick,  # --quick: a tiny CPU pipeline, the pass/fail below is only exercised
        "sds_batch1_ms_pass": None if ms is None else ms <= TARGETS["sds_batch1_ms"],
        "sds_batch1_peak_pass": None if peak is None else peak <= TARGETS["sds_batch1_peak_gb"],
    }


# ---------------------------------------------------------------------------------------------- 4. masked edit


def _finite(scene: GaussianScene) -> bool:
    return all(bool(torch.isfinite(t).all()) for _, t in scene.items())


def masked_edit(plan: Plan, part: str = "head") -> dict:
    from dataclasses import replace

    from engine.optimize import DensifyConfig
    from engine.edit import EditConfig, run_edit

    device = torch.device(plan.device)
    model = sd_model(plan)
    scene, part_ids, names, up = robot()
    mask = (part_ids == names.index(part)).float()
    steps = plan.edit_steps  # densification at steps/2 and 3/4 (the defaults' 100 and 150 for 200 steps)
    densify = replace(DensifyConfig(), start_step=steps // 2, interval=max(steps // 4, 1))
    config = EditConfig(prompt="a red robot head", method="sds", steps=steps, resolution=plan.edit_resolution,
                        preview_every=0, up=up, seed=0, densify=densify,
                        edit="shape")  # densification must run: appended rows must not disturb frozen ones
    losses = []
    budget = Budget(plan.budget_s["masked_edit"])
    _reset_peak(device)
    start = time.perf_counter()
    error = None
    try:
        result = run_edit(scene.to(device), mask.to(device), config, model, should_stop=budget.spent,
                          on_event=lambda e: losses.append(e.losses.get("loss", math.nan)))
    except (FloatingPointError, SceneError) as exc:  # run_edit's non-finite-loss stop, or a NaN parameter
        if isinstance(exc, SceneError) and "nan" not in str(exc).lower():
            raise
        result, error = None, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    entry = {"renderer": auto_renderer(plan.device), "scene": f"bundled robot, part {part!r}",
             "gaussians": len(scene), "masked": int((mask > 0.5).sum()), "steps": plan.edit_steps,
             "resolution": plan.edit_resolution, "method": "sds", "wall_s": round(seconds, 3),
             "ms_per_step": round(1000 * seconds / max(len(losses), 1), 2), "peak_gpu_mem_gb": _peak_gb(device)}
    if result is None:
        entry.update(unmasked_bit_identical=False, no_nan=False, nan_error=error, steps_done=len(losses))
        return entry
    if result.cancelled:  # stopped by the time budget: run_edit hands back the input, nothing to compare
        entry.update(budget.skipped(), steps_done=result.steps_done, unmasked_bit_identical=None, no_nan=None)
        return entry
    edited, edited_mask = result.scene.to("cpu"), result.mask.cpu()
    keep_in = mask <= config.mask_threshold
    keep_out = edited_mask <= config.mask_threshold
    before, after = scene.subset(keep_in), edited.subset(keep_out)
    identical = len(before) == len(after) and all(
        torch.equal(a, b) for (_, a), (_, b) in zip(before.items(), after.items()))
    entry.update(
        steps_done=result.steps_done, gaussians_after=len(edited), masked_after=int((~keep_out).sum()),
        cloned=result.num_cloned, split=result.num_split, pruned=result.num_pruned,
        unmasked_bit_identical=bool(identical),
        no_nan=bool(_finite(edited) and all(math.isfinite(v) for v in losses)),
        final_loss=losses[-1] if losses else None,
    )
    return entry


# ---------------------------------------------------------------------------------------------- 5. SD3 steps


class _RandomSD3Text:
    """Random text conditioning in SD3's shapes (CLIP-L+G padded, then T5: 77 + 256 tokens of 4096; pooled 2048):
    a prompt is encoded once per edit, so the step timing leaves the text encoders out."""

    def __init__(self, length: int, width: int, pooled: int, device, dtype) -> None:
        g = torch.Generator().manual_seed(0)
        self.pair = (torch.randn(1, length, width, generator=g).to(device, dtype),
                     torch.randn(1, pooled, generator=g).to(device, dtype))
        self.tokenizers = [None]

    def encode(self, prompts):
        return self.pair[0].expand(len(prompts), -1, -1), self.pair[1].expand(len(prompts), -1)


def random_sd3_model(quick: bool, device: torch.device, dtype: torch.dtype):
    """A FlowModel with SD3-medium's transformer and VAE config values and random weights (--quick: tiny)."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    from engine.guidance.flow_model import FlowModel, flow_sigmas

    torch.manual_seed(0)
    if quick:
        transformer = SD3Transformer2DModel(sample_size=8, num_layers=2, attention_head_dim=8, num_attention_heads=4,
                                            joint_attention_dim=64, caption_projection_dim=32,
                                            pooled_projection_dim=64, pos_embed_max_size=32)
        vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            block_out_channels=(16, 32), latent_channels=16, norm_num_groups=8, layers_per_block=1)
        text = _RandomSD3Text(32, 64, 64, device, dtype)
    else:
        transformer = SD3Transformer2DModel(sample_size=128, num_layers=24, attention_head_dim=64,
                                            num_attention_heads=24, joint_attention_dim=4096,
                                            caption_projection_dim=1536, pooled_projection_dim=2048,
                                            pos_embed_max_size=192)
        vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            block_out_channels=(128, 256, 512, 512), latent_channels=16, layers_per_block=2,
                            scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                            use_post_quant_conv=False)
        text = _RandomSD3Text(77 + 256, 4096, 2048, device, dtype)
    return FlowModel(text=text, transformer=transformer.to(device, dtype), vae=vae.to(device, dtype),
                     sigmas=flow_sigmas(1000, 3.0), device=device, dtype=dtype,
                     name="random-sd3-medium" if not quick else "random-sd3-tiny")


def sd3_step(plan: Plan) -> dict:
    """Masked rectified-flow SDS steps (guidance 100, RoMaP's t range) on one render with a random-weight
    SD3-medium-architecture model, bf16, at 512^2 (RoMaP's size: the model's native size is set to it) and
    1024^2 (SD3's native size): ms per step (VAE encode, CFG transformer pass, backward to the image) and peak."""
    from engine.guidance import SDSLoss, TimestepSchedule

    budget = Budget(plan.budget_s.get("sd3_step", 120.0))
    device = torch.device(plan.device)
    dtype = torch.float32 if plan.quick else torch.bfloat16
    t0 = time.perf_counter()
    with device:
        model = random_sd3_model(plan.quick, device, dtype)
    build_s = round(time.perf_counter() - t0, 3)
    steps, warmup = (1, 1) if plan.quick else (5, 2)
    cases: dict[str, dict] = {}
    for size in ((16, 32) if plan.quick else (512, 1024)):
        if budget.spent():
            cases[f"sds_{size}"] = budget.skipped()
            continue
        model.image_size = size

        def case(size=size) -> dict:
            loss = SDSLoss(model, "a robot with a red head", 100.0, TimestepSchedule(0.3, 0.98))
            image = torch.rand(1, size, size, 3, device=device, requires_grad=True)
            mask = torch.zeros(1, size, size, 1, device=device)
            mask[:, : size // 2] = 1.0
            g, times = torch.Generator().manual_seed(0), []
            _reset_peak(device)
            for i in range(warmup + steps):
                _sync(device)
                start = time.perf_counter()
                loss(image, step=i, total_steps=warmup + steps, mask2d=mask, generator=g).loss.backward()
                _sync(device)
                times.append(1000 * (time.perf_counter() - start))
                image.grad = None
            return {"ms_per_step": round(statistics.median(times[warmup:]), 2), "peak_gpu_mem_gb": _peak_gb(device)}

        cases[f"sds_{size}"] = guarded(case, free_on=device)
    return {"model": model.name, "dtype": str(dtype).removeprefix("torch."), "model_build_s": build_s,
            "timed_steps": steps, "warmup_steps": warmup, "cases": cases}


# ---------------------------------------------------------------------------------------------- driver


def environment(plan: Plan) -> dict:
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    env = {"python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "cuda_available": torch.cuda.is_available(),
           **{name: version(name) for name in ("gsplat", "triton", "diffusers", "transformers", "numba")}}
    if plan.device == "cuda":
        env.update({k: os.environ.get(k) for k in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS")})
        env["device"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        env["gpu_mem_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def _clean(value):
    """JSON-safe: non-finite floats become the strings "nan" / "inf" / "-inf" (visible, and strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, torch.Tensor):
        return _clean(value.tolist())
    return value


def _write(report: dict, out: Path | None) -> str:
    text = json.dumps(_clean(report), indent=2, allow_nan=False)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return text


def run(plan: Plan, sections=SECTIONS, out: Path | None = None) -> dict:
    """Every asked-for section, guarded and timed, in order; the report is rewritten to `out` after each."""
    functions = {"agreement": agreement, "timing": timing, "sd_step": sd_step, "masked_edit": masked_edit,
                 "sd3_step": sd3_step}
    report = {"quick": plan.quick, "environment": environment(plan), "plan": asdict(plan)}
    start = time.perf_counter()
    for name in sections:
        report[name] = guarded(functions[name], plan, free_on=plan.device)
        _free(plan.device)
        report["total_s"] = round(time.perf_counter() - start, 3)
        _write(report, out)
    report["summary"] = {
        "agreement_pass": report.get("agreement", {}).get("pass"),
        "sds_batch1_ms_pass": report.get("sd_step", {}).get("sds_batch1_ms_pass"),
        "sds_batch1_peak_pass": report.get("sd_step", {}).get("sds_batch1_peak_pass"),
        "unmasked_bit_identical": report.get("masked_edit", {}).get("unmasked_bit_identical"),
        "no_nan": report.get("masked_edit", {}).get("no_nan"),
        "edit_renderer": report.get("sd_step", {}).get("renderer"),
        **{f"{b}_agreement_pass": report.get("agreement", {}).get(b, {}).get("pass") for b in plan.also},
        **{f"{b}_over_{plan.timing_backend}_1M_512_fwd_bwd": report.get("timing", {}).get(
            f"{b}_over_{plan.timing_backend}", {}).get("1000000_512x512_fwd_bwd") for b in plan.also},
        "errors": [name for name in sections if "error" in report[name]],
    }
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy sizes on the CPU (the test's mode)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here (after every section)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--backends", default="gsplat,triton",
                        help="GPU backends to measure, the first is the baseline of the ratios (not with --quick)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in ("gsplat", "triton") for b in backends):
        parser.error(f"--backends takes gsplat and/or triton, got {args.backends!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not args.quick and torch.cuda.is_available():
        # gsplat compiles its kernels on first use (torch's JIT): only for this GPU, with every core
        major, minor = torch.cuda.get_device_capability()
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
        os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    if not args.quick and not torch.cuda.is_available():
        report = {"cuda_available": False, "quick": False,
                  "message": "CUDA is unavailable: nothing measured (run with --quick for the CPU toy version)"}
    else:
        threads = torch.get_num_threads()
        if args.quick:  # toy tensors: extra threads only spin, and on a shared machine they cost 5x (seen here)
            torch.set_num_threads(1)
        try:
            report = run(quick_plan() if args.quick else with_backends(gpu_plan(), backends), sections, args.out)
        finally:
            torch.set_num_threads(threads)  # main() is also called in-process (tests)
    print(_write(report, args.out))
    return report


if __name__ == "__main__":
    main()
