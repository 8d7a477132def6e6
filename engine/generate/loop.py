"""Text-to-3D: grow a Gaussian scene from a primitive (or a mesh / point cloud) by score distillation.

Follow one step of `iter_generate` (the body carries the same numbers):

1. pick the render size from the resolution schedule (low to high: coarse shape first, cheap steps early);
2. sample random orbit cameras around the object (`object_orbit`);
3. render the whole scene (every parameter of every Gaussian is optimized) on the background colour;
4. ask the guidance loss for a loss on the renders: SDS (engine/guidance/sds.py), ISM, the variance-reduced
   interval score matching of LucidDreamer (engine/guidance/ism.py, which says why ISM), or NFSD, CSD, ESD
   (engine/guidance/methods.py lists them);
5. backpropagate, take an Adam step (the position learning rate decays exponentially over the run);
6. densify and prune with the edit's rules (engine/optimize/densify.py) applied to the whole scene; report
   progress and, every few steps, a preview image.

The starting scene comes from init.py: a sphere or ellipsoid of Gaussians with random colours, or any file
`engine.io.load` reads (meshes and point clouds are turned into Gaussians there).

Bad input is refused before any work by config.py's `check_generate_config` (and `initial_scene` for the init
file), at the call of `iter_generate`, not at its first step.

Two ways to drive it, as for an edit: `iter_generate` yields a `Progress` per step and, as its last item,
the generated `GaussianScene`; `run_generate(config, model, on_event=..., should_stop=...)` consumes it with a
callback and returns the scene.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..guidance.reference import ReferencePrior, ViewAwareModel
from ..optimize.adam import adopt_rows, make_optimizer, set_position_rate
from ..optimize.densify import MaskedDensifier, accumulate_gradients
from ..optimize.orbit import Orbit
from ..optimize.progress import EtaClock, Progress
from ..render import render
from ..render.images import rgb_renderer, to_uint8
from ..scene import GaussianScene, SceneError
from .config import GenerateConfig, check_generate_config
from .init import initial_scene


def object_orbit(scene: GaussianScene, config: GenerateConfig) -> Orbit:
    """Random cameras orbiting the starting object at distances that frame it. Centre: the middle of the
    centres' bounding box (1% outliers ignored); extent: the farthest of 98% of the centres from it, padded by
    twice the typical Gaussian size."""
    means = scene.means.detach().double().cpu()
    quantile = 0.01 if len(scene) > 100 else 0.0
    lo, hi = scene.detach().to("cpu", torch.float64).bounding_box(quantile)
    sizes = torch.exp(scene.scales.detach().double().cpu()).max(dim=-1).values
    return Orbit.around(means, (lo + hi) / 2, sizes, fov_y_deg=config.fov_y_deg,
                        elevation_range=config.elevation_range, radius_range=config.radius_range, up=config.up,
                        resolution=config.resolution)


def build_loss(config: GenerateConfig, model):
    """The guidance loss for `config.method` (engine/guidance/methods.py) with the config's timesteps and scale,
    each None resolved for the model's family."""
    from ..guidance.methods import build_loss as build_method_loss
    from ..guidance.methods import family_of, make_schedule

    run = config.resolved(family_of(model))  # the method's defaults for this model's family where None
    timesteps = make_schedule(run.schedule, run.t_min, run.t_max, max(run.t_max_end, run.t_min))
    return build_method_loss(config.method, model, prompt=config.prompt,
                             guidance_scale=run.guidance_scale, timesteps=timesteps,
                             ism_interval=config.ism_interval, ism_inversion_step=config.ism_inversion_step)


def run_generate(
    config: GenerateConfig,
    guidance_model,
    *,
    on_event: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    initial: GaussianScene | None = None,
    loss_fn=None,
) -> GaussianScene:
    """Generate a scene for `config.prompt` with `guidance_model` (an engine.guidance model); see the module
    docstring and `iter_generate`. Without `on_event` no preview is rendered (nobody would see it)."""
    if on_event is None:
        config = replace(config, preview_every=0)
    for record in iter_generate(config, guidance_model, should_stop=should_stop, initial=initial, loss_fn=loss_fn):
        if isinstance(record, GaussianScene):
            return record
        if on_event is not None:
            on_event(record)
    raise RuntimeError("the generation ended without a scene")  # iter_generate always yields one last


def iter_generate(
    config: GenerateConfig,
    guidance_model,
    *,
    should_stop: Callable[[], bool] | None = None,
    initial: GaussianScene | None = None,
    loss_fn=None,
    preview_angles: tuple[float, float] | None = None,
) -> Iterator[Progress | GaussianScene]:
    """The generation as a generator: a `Progress` after every step, then the scene as the last item.

    `initial` overrides `config.init` (the CLI loads the init file before the model, to refuse a bad one early).
    `loss_fn` overrides the loss built from `config.method` (tests inject instrumented losses). A model with a
    `set_views(cameras)` method (engine/guidance/reference.py) is told the cameras before each loss.
    `preview_angles`: (azimuth, elevation) in degrees the previews are seen from (the user's view; the
    object stays framed), else a fixed angle of the generation's orbit. `should_stop` is polled before every step; when it returns True the loop stops and the scene optimized so
    far comes last (the caller that asked to stop decides whether to keep it). Validates at the call.
    """
    check_generate_config(config, guidance_model)
    scene = initial if initial is not None else initial_scene(config)
    if len(scene) == 0:
        raise ValueError("the initial scene is empty; start from a primitive or a non-empty mesh / point cloud")
    try:
        scene.validate(check_finite=True)
    except SceneError as exc:
        raise ValueError(f"cannot start from this scene: {exc}") from exc
    return _generate_steps(scene, config, guidance_model, should_stop, loss_fn, preview_angles)


def _generate_steps(scene: GaussianScene, config: GenerateConfig, guidance_model,
                    should_stop: Callable[[], bool] | None, loss_fn,
                    preview_angles: tuple[float, float] | None = None) -> Iterator[Progress | GaussianScene]:
    device = getattr(guidance_model, "device", scene.device)
    latent_scale = int(getattr(guidance_model, "latent_scale", 1) or 1)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(int(config.seed))
    orbit = object_orbit(scene, config)
    params = _leaves(scene, device)
    lrs = config.lr.as_dict()
    lrs["means"] *= orbit.half_extent
    optimizer = make_optimizer(params, lrs)
    densifier = MaskedDensifier(config.densify, config.steps, len(scene), scene_scale=orbit.half_extent)
    model = guidance_model
    if isinstance(model, ReferencePrior):  # guidance/ cannot draw its reference: hand it our renderer
        model = model.with_renderer(rgb_renderer(config.render_backend))
    loss = loss_fn if loss_fn is not None else build_loss(config, model)
    preview_cam = (orbit.ring(1, resolution=config.preview_resolution, offset_deg=30.0) if preview_angles is None
                   else orbit.at(*preview_angles, resolution=config.preview_resolution))
    background = tuple(float(c) for c in config.background)
    fallback_3d = False

    clock = EtaClock()
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            break
        # 1. this step's render size (and the position rate of its Adam step)
        set_position_rate(optimizer, lrs["means"], config.lr.means_final_fraction, step, config.steps)
        resolution = config.resolution_at(step, latent_scale)

        # 2. random views of the object
        cameras = orbit.sample(config.batch_size, generator, resolution=resolution)
        if isinstance(model, ViewAwareModel):
            model.set_views(cameras)

        # 3. render every Gaussian
        out = render(GaussianScene(**params), cameras, background=background, backend=config.render_backend)
        means2d = out.meta.get("means2d")
        if isinstance(means2d, Tensor) and means2d.requires_grad:
            means2d.retain_grad()

        # 4. the guidance loss on the renders
        result = loss(out.rgb, step=step, total_steps=config.steps, generator=generator)
        if not torch.isfinite(result.loss):
            raise FloatingPointError(f"the generation loss became {float(result.loss)} at step {step + 1}; "
                                     "lower the learning rates or the guidance scale")

        # 5. backward and the Adam step
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()

        # 6. densify / prune on schedule; report progress (and a preview every few steps)
        fallback_3d = accumulate_gradients(densifier, params, means2d, out.meta, cameras) or fallback_3d
        if densifier.due(step):
            params, optimizer = _refine(densifier, params, optimizer, lrs, fallback_3d, generator)

        done = step + 1
        elapsed = time.perf_counter() - start
        preview = None
        if config.preview_every and (done % config.preview_every == 0 or done == config.steps):
            with torch.no_grad():
                shown = render(GaussianScene(**params).detach(), preview_cam, background=background,
                               backend=config.render_backend).rgb[0]
            preview = to_uint8(shown)
        losses = {"loss": float(result.loss.detach()), **{k: float(v) for k, v in result.info.items()}}
        yield Progress(step=done, total=config.steps, losses=losses, elapsed_s=elapsed,
                            eta_s=clock.tick(config.steps - done), num_gaussians=int(params["means"].shape[0]),
                            resolution=resolution, preview=preview)

    yield GaussianScene(**{n: t.detach() for n, t in params.items()})


def _leaves(scene: GaussianScene, device) -> dict[str, Tensor]:
    return {n: t.detach().to(device, torch.float32).clone().requires_grad_(True) for n, t in scene.items()}


def _refine(densifier: MaskedDensifier, params: dict[str, Tensor], optimizer: torch.optim.Optimizer,
            lrs: dict[str, float], fallback_3d: bool, generator: torch.Generator):
    """Clone/split/prune every Gaussian; Adam's moments follow their rows (zero for new ones)."""
    refinement = densifier.refine(params, fallback_3d=fallback_3d, generator=generator)
    if not refinement.changed:
        return params, optimizer
    new_params = {n: t.detach().clone().requires_grad_(True) for n, t in refinement.params.items()}
    return new_params, adopt_rows(optimizer, params, new_params, refinement.parent, refinement.reset_state, lrs)
