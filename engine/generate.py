"""Text-to-3D: grow a Gaussian scene from a primitive (or a mesh / point cloud) by score distillation.

Follow one step of `run_generate`:

1. pick the render size from the resolution schedule (low to high: coarse shape first, cheap steps early);
2. sample random orbit cameras around the object (`ObjectOrbit`);
3. render the whole scene (every parameter of every Gaussian is optimized) on the background colour;
4. ask the guidance loss for a loss on the renders: SDS (engine/guidance/sds.py) or ISM, the variance-reduced
   interval score matching of LucidDreamer (engine/generate_losses.py, which says why ISM);
5. backpropagate, take an Adam step (the position learning rate decays exponentially over the run);
6. densify and prune with the edit's rules (engine/densify.py) applied to the whole scene; report progress
   and, every few steps, a preview image.

The starting scene comes from engine/generate_init.py: a sphere or ellipsoid of Gaussians with random colours,
or any file `engine.io.load` reads (meshes and point clouds are turned into Gaussians there).

Bad input is refused before any work by `check_generate_config` (and `initial_scene` for the init file): an
empty prompt, an unknown method or primitive, an unreadable or empty init file, step counts outside
[1, 100000], resolutions outside [16, 2048] or not a multiple of the model's latent scale.

For the app: call `run_generate(config, model, on_event=..., should_stop=...)` on the engine thread; events are
`GenerateEvent`s (the fields of the edit's progress events, plus the render resolution).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .camera import Cameras, framing_radius, orbit_cameras, sample_orbit_cameras
from .densify import DensifyConfig, MaskedDensifier, remap_adam_state
from .optimize import make_optimizer, to_uint8
from .generate_init import PRIMITIVES, load_init_scene, primitive_scene
from .reference_prior import ViewAwareModel
from .render import render
from .scene import PARAM_NAMES, GaussianScene, SceneError

METHODS = ("sds", "ism")
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048
MAX_STEPS = 100_000
MAX_INITIAL_GAUSSIANS = 10_000_000


@dataclass
class GenerateLearningRates:
    """Adam learning rate of each parameter group (raw parameters; see engine/scene.py)."""

    means: float = 0.002
    """Positions, as a fraction of the object's half extent per step (scaled by it at the start)."""
    means_final_factor: float = 0.02
    """The position rate decays exponentially to `means` x this by the last step (1: constant)."""
    scales: float = 0.005
    """Log-scales."""
    quats: float = 0.005
    """Unnormalized quaternions."""
    opacities: float = 0.05
    """Opacity logits (Gaussians that are not part of the object fade out and are pruned)."""
    sh0: float = 0.01
    """Degree-0 colour coefficients (colour = 0.282 * sh0 + 0.5)."""
    shN: float = 0.0005
    """Higher SH bands (view-dependent colour)."""

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}


def default_densify() -> DensifyConfig:
    """Densification for a whole generated object: more growth than an edit, refined every 100 steps."""
    return DensifyConfig(start_step=100, interval=100, stop_fraction=0.7, scale_threshold=0.02, max_growth=10.0)


@dataclass
class GenerateConfig:
    """Everything that defines one generation job (the `python -m engine generate` flags map onto these)."""

    prompt: str = ""
    """What to make, e.g. "a ceramic mug with a blue glaze"."""
    model: str = ""
    """Model spec (hub id, local directory or closed-form:<colour>); "" means engine.guidance's default. Used by
    the CLI and the worker to load the model; run_generate takes the loaded model as an argument."""
    method: str = "sds"
    """sds: score distillation sampling; ism: interval score matching (LucidDreamer), a variance-reduced SDS
    without the random-noise term (see engine/generate_losses.py)."""
    steps: int = 1000
    """Optimization steps."""
    resolution: int = 512
    """Final render size (square) fed to the guidance; a multiple of the model's latent scale (8 for SD)."""
    resolution_start: int | None = None
    """Render size at the first step; None: a quarter of `resolution`, at least 64 (or `resolution` if lower)."""
    resolution_ramp: float = 0.5
    """Fraction of the steps over which the size grows linearly from `resolution_start` to `resolution`."""
    batch_size: int = 1
    """Views rendered per step."""
    guidance_scale: float | None = None
    """Classifier-free guidance scale; None: 100 for sds (score distillation needs a large scale), 7.5 for ism."""
    seed: int = 0
    """Seeds the initial primitive, cameras, timesteps, noise and densification: same seed, same result on CPU."""
    t_min: float = 0.02
    """Lowest diffusion timestep, as a fraction of the model's training timesteps."""
    t_max: float = 0.98
    """Highest diffusion timestep at the first step."""
    t_max_end: float | None = 0.5
    """t_max is annealed linearly to this by the last step (coarse shape first, then detail); None: no annealing."""
    ism_interval: float = 0.05
    """ism: the interval t - s between the two compared timesteps, as a fraction (LucidDreamer: 50 of 1000)."""
    ism_inversion_step: float = 0.2
    """ism: largest DDIM inversion step from 0 to s, as a fraction (LucidDreamer: 200 of 1000)."""
    init: str = "sphere"
    """Starting scene: "sphere", "ellipsoid" (primitives of random-coloured Gaussians) or the path of a mesh, point
    cloud or scene file (anything engine.io.load reads; used as is)."""
    num_gaussians: int = 2000
    """Gaussians in the starting primitive (ignored for a file init)."""
    init_radius: float = 0.5
    """Radius of the starting primitive (world units), centred at the origin."""
    ellipsoid_axes: tuple[float, float, float] = (0.6, 0.6, 1.0)
    """Ellipsoid semi-axes relative to `init_radius` (x, y, z; z is up by default: taller than wide)."""
    init_opacity: float = 0.3
    """Opacity of the starting primitive's Gaussians."""
    sh_degree: int = 0
    """SH degree of the starting primitive (0: view-independent colour, the usual choice for text-to-3D)."""
    lr: GenerateLearningRates = field(default_factory=GenerateLearningRates)
    """Learning rates per parameter group."""
    densify: DensifyConfig = field(default_factory=default_densify)
    """Clone/split/prune over the whole scene (engine/densify.py)."""
    fov_y_deg: float = 49.0
    """Vertical field of view of the sampled cameras (DreamGaussian's 49 degrees)."""
    elevation_range: tuple[float, float] = (-10.0, 45.0)
    """Camera elevation range in degrees above the plane orthogonal to `up`."""
    radius_range: tuple[float, float] = (1.0, 1.4)
    """Camera distance as multiples of the radius at which the starting object fills the view."""
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """World up direction for the orbit."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour of the renders."""
    preview_every: int = 10
    """Emit a preview image every this many steps (0: never)."""
    preview_resolution: int = 256
    """Size (square) of preview images."""
    render_backend: str = "auto"
    """engine.render backend."""

    def effective_guidance_scale(self) -> float:
        if self.guidance_scale is not None:
            return float(self.guidance_scale)
        return 7.5 if self.method == "ism" else 100.0

    def start_resolution(self, latent_scale: int = 1) -> int:
        """The render size at step 0 (the default rule of `resolution_start`), a multiple of `latent_scale`."""
        if self.resolution_start is not None:
            return int(self.resolution_start)
        start = max(min(self.resolution, 64), self.resolution // 4)
        return max(latent_scale, start // latent_scale * latent_scale)

    def resolution_at(self, step: int, latent_scale: int = 1) -> int:
        """Render size at `step` (0-based): linear from the start size to `resolution` over the ramp, rounded
        down to a multiple of `latent_scale`."""
        start = self.start_resolution(latent_scale)
        if self.resolution_ramp <= 0 or self.steps <= 1:
            return self.resolution
        progress = min(step / ((self.steps - 1) * self.resolution_ramp), 1.0)
        size = start + (self.resolution - start) * progress
        return max(start, int(size) // latent_scale * latent_scale)


@dataclass
class GenerateEvent:
    """Progress of a running generation, reported after every step."""

    step: int  # steps done (1-based)
    total: int
    losses: dict[str, float]
    elapsed_s: float
    eta_s: float
    num_gaussians: int
    resolution: int  # render size of this step
    preview: np.ndarray | None = None  # [H, W, 3] uint8, every `preview_every` steps and at the last step


# ---------------------------------------------------------------------------------------------- validation


def is_primitive(init: str) -> bool:
    return init in PRIMITIVES


def _check_range(name: str, value, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")


def check_generate_config(config: GenerateConfig, model=None) -> None:
    """Refuse a config that cannot give a meaningful generation, before any work (ValueError saying what to fix).

    With `model`, also checks the resolutions against its latent scale. The init file is only checked to exist
    here; `initial_scene` reads it (and refuses an unreadable or empty one).
    """
    if config.method not in METHODS:
        raise ValueError(f"unknown generation method {config.method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(config.prompt, str) or not config.prompt.strip():
        raise ValueError("the prompt is empty; describe the object to generate, e.g. --prompt \"a red apple\"")
    if isinstance(config.steps, bool) or not isinstance(config.steps, int) or not 1 <= config.steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {config.steps!r}")
    scale = int(getattr(model, "latent_scale", 1) or 1)
    for name, value in (("resolution", config.resolution), ("resolution_start", config.resolution_start)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_RESOLUTION <= value <= MAX_RESOLUTION:
            raise ValueError(f"{name} must be an integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {value!r}")
        if value % scale:
            raise ValueError(f"{name} {value} must be a multiple of {scale} for this model "
                             f"(try {max(scale, value // scale * scale)})")
    if config.resolution_start is not None and config.resolution_start > config.resolution:
        raise ValueError(f"resolution_start ({config.resolution_start}) must not exceed resolution "
                         f"({config.resolution}): the schedule goes from low to high")
    _check_range("resolution_ramp", config.resolution_ramp, 0.0, 1.0)
    if isinstance(config.batch_size, bool) or not isinstance(config.batch_size, int) or not 1 <= config.batch_size <= 64:
        raise ValueError(f"batch_size must be an integer in [1, 64], got {config.batch_size!r}")
    if config.guidance_scale is not None and not (
        isinstance(config.guidance_scale, (int, float)) and math.isfinite(config.guidance_scale)
        and config.guidance_scale > 0
    ):
        raise ValueError(f"guidance_scale must be a positive number, got {config.guidance_scale!r}")
    if not 0.0 <= config.t_min <= config.t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min <= t_max <= 1, got t_min={config.t_min}, t_max={config.t_max}")
    if config.t_max_end is not None and not config.t_min <= config.t_max_end <= 1.0:
        raise ValueError(f"t_max_end must be in [t_min, 1], got {config.t_max_end}")
    if not 0.0 < config.ism_interval < 1.0 or not 0.0 < config.ism_inversion_step <= 1.0:
        raise ValueError("ism_interval must be in (0, 1) and ism_inversion_step in (0, 1]")
    if not isinstance(config.init, str) or not config.init.strip():
        raise ValueError(f"init must be one of {', '.join(PRIMITIVES)} or the path of a mesh / point cloud")
    if is_primitive(config.init):
        if (isinstance(config.num_gaussians, bool) or not isinstance(config.num_gaussians, int)
                or not 1 <= config.num_gaussians <= MAX_INITIAL_GAUSSIANS):
            raise ValueError(f"num_gaussians must be an integer in [1, {MAX_INITIAL_GAUSSIANS}], "
                             f"got {config.num_gaussians!r}")
        _check_range("init_radius", config.init_radius, 1e-6, 1e6)
        _check_range("init_opacity", config.init_opacity, 1e-4, 1 - 1e-4)
        if not 0 <= config.sh_degree <= 3:
            raise ValueError(f"sh_degree must be 0-3, got {config.sh_degree}")
    else:
        path = Path(config.init).expanduser()
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ValueError(f"init {config.init!r} {what}: give {' or '.join(PRIMITIVES)}, or the path of a mesh "
                             "or point cloud file")
    for name, value in config.lr.as_dict().items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"learning rate for {name} must be a finite number >= 0, got {value}")
    _check_range("lr.means_final_factor", config.lr.means_final_factor, 1e-9, 1.0)
    _check_range("fov_y_deg", config.fov_y_deg, 1.0, 179.0)
    lo, hi = config.elevation_range
    if not -90.0 <= lo <= hi <= 90.0:
        raise ValueError(f"elevation_range must satisfy -90 <= low <= high <= 90, got {config.elevation_range}")
    lo, hi = config.radius_range
    if not 0.0 < lo <= hi:
        raise ValueError(f"radius_range must satisfy 0 < low <= high, got {config.radius_range}")
    if isinstance(config.preview_every, bool) or not isinstance(config.preview_every, int) or config.preview_every < 0:
        raise ValueError(f"preview_every must be an integer >= 0, got {config.preview_every!r}")
    _check_range("preview_resolution", config.preview_resolution, MIN_RESOLUTION, MAX_RESOLUTION)


def initial_scene(config: GenerateConfig) -> GaussianScene:
    """The starting scene of `config.init`: a primitive (seeded by `config.seed`) or the file's Gaussians."""
    if is_primitive(config.init):
        return primitive_scene(
            config.init, config.num_gaussians, radius=config.init_radius, axes=config.ellipsoid_axes,
            opacity=config.init_opacity, sh_degree=config.sh_degree, seed=config.seed,
        )
    return load_init_scene(Path(config.init).expanduser())


# ---------------------------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class ObjectOrbit:
    """Random cameras orbiting the starting object at distances that frame it."""

    center: Tensor  # [3] float64
    half_extent: float  # radius of a sphere around `center` holding the object
    radius: float  # camera distance at which that sphere fills the view
    config: GenerateConfig

    @classmethod
    def around(cls, scene: GaussianScene, config: GenerateConfig) -> "ObjectOrbit":
        """Centre: the middle of the centres' bounding box (1% outliers ignored); extent: the farthest of 98% of
        the centres from it, padded by twice the typical Gaussian size."""
        means = scene.means.detach().double().cpu()
        quantile = 0.01 if len(scene) > 100 else 0.0
        lo, hi = scene.detach().to("cpu", torch.float64).bounding_box(quantile)
        center = (lo + hi) / 2
        dist = (means - center).norm(dim=-1)
        reach = float(torch.quantile(dist, 0.98)) if dist.numel() > 20 else float(dist.max())
        size = float(torch.exp(scene.scales.detach().double().cpu()).max(dim=-1).values.median())
        half_extent = max(reach + 2 * size, 1e-3)
        return cls(center, half_extent, framing_radius(half_extent, config.fov_y_deg), config)

    def sample(self, num: int, resolution: int, generator: torch.Generator) -> Cameras:
        lo, hi = self.config.radius_range
        return sample_orbit_cameras(
            num, self.center, radius_range=(lo * self.radius, hi * self.radius),
            elevation_range=tuple(self.config.elevation_range), width=resolution, height=resolution,
            fov_y_deg=self.config.fov_y_deg, up=tuple(self.config.up), generator=generator,
        )

    def ring(self, num: int, resolution: int, *, offset_deg: float = 30.0) -> Cameras:
        """`num` evenly spaced views at mid elevation and mid distance (previews, evaluation views)."""
        az = torch.arange(num, dtype=torch.float64) * (360.0 / num) + offset_deg
        el = torch.full((num,), sum(self.config.elevation_range) / 2, dtype=torch.float64)
        dist = self.radius * sum(self.config.radius_range) / 2
        return orbit_cameras(self.center, dist, az, el, width=resolution, height=resolution,
                             fov_y_deg=self.config.fov_y_deg, up=tuple(self.config.up))


# ---------------------------------------------------------------------------------------------- the job


def build_loss(config: GenerateConfig, model):
    """The guidance loss for `config.method` with the config's timesteps and guidance scale."""
    from .generate_losses import ISMLoss
    from .guidance.sds import SDSLoss
    from .guidance.timesteps import TimestepSchedule

    timesteps = TimestepSchedule(t_min=config.t_min, t_max=config.t_max, t_max_end=config.t_max_end)
    scale = config.effective_guidance_scale()
    if config.method == "ism":
        return ISMLoss(model, config.prompt, guidance_scale=scale, timesteps=timesteps,
                       interval=config.ism_interval, inversion_step=config.ism_inversion_step)
    return SDSLoss(model, config.prompt, guidance_scale=scale, timesteps=timesteps)


def _set_means_lr(optimizer: torch.optim.Optimizer, base: float, final_factor: float, step: int, total: int) -> None:
    """Exponential decay of the position rate from `base` to `base * final_factor` over the run."""
    progress = step / max(total - 1, 1)
    for group in optimizer.param_groups:
        if group["name"] == "means":
            group["lr"] = base * final_factor**progress


def _leaves(scene: GaussianScene, device) -> dict[str, Tensor]:
    return {n: t.detach().to(device, torch.float32).clone().requires_grad_(True) for n, t in scene.items()}


def run_generate(
    config: GenerateConfig,
    guidance_model,
    *,
    on_event: Callable[[GenerateEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    initial: GaussianScene | None = None,
    loss_fn=None,
) -> GaussianScene:
    """Generate a scene for `config.prompt` with `guidance_model` (an engine.guidance model); see the module
    docstring.

    `initial` overrides `config.init` (the CLI loads the init file before the model, to refuse a bad one early).
    `loss_fn` overrides the loss built from `config.method` (tests inject instrumented losses). A model with a
    `set_views(cameras)` method (engine/reference_prior.py) is told the cameras before each loss.
    `should_stop` is polled before every step; when it returns True the loop stops and the scene optimized so
    far is returned (the caller that asked to stop decides whether to keep it).
    """
    check_generate_config(config, guidance_model)
    scene = initial if initial is not None else initial_scene(config)
    if len(scene) == 0:
        raise ValueError("the initial scene is empty; start from a primitive or a non-empty mesh / point cloud")
    try:
        scene.validate(check_finite=True)
    except SceneError as exc:
        raise ValueError(f"cannot start from this scene: {exc}") from exc

    device = getattr(guidance_model, "device", scene.device)
    latent_scale = int(getattr(guidance_model, "latent_scale", 1) or 1)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(int(config.seed))
    orbit = ObjectOrbit.around(scene, config)
    params = _leaves(scene, device)
    lrs = config.lr.as_dict()
    lrs["means"] *= orbit.half_extent
    optimizer = make_optimizer(params, lrs)
    densifier = MaskedDensifier(config.densify, config.steps, len(scene), scene_scale=orbit.half_extent)
    loss = loss_fn if loss_fn is not None else build_loss(config, guidance_model)
    preview_cam = orbit.ring(1, config.preview_resolution)
    background = tuple(float(c) for c in config.background)
    fallback_3d = False

    for step in range(config.steps):
        if should_stop is not None and should_stop():
            break
        _set_means_lr(optimizer, lrs["means"], config.lr.means_final_factor, step, config.steps)
        resolution = config.resolution_at(step, latent_scale)
        cameras = orbit.sample(config.batch_size, resolution, generator)
        if isinstance(guidance_model, ViewAwareModel):
            guidance_model.set_views(cameras)

        current = GaussianScene(**params)
        out = render(current, cameras, background=background, backend=config.render_backend)
        means2d = out.meta.get("means2d")
        if isinstance(means2d, Tensor) and means2d.requires_grad:
            means2d.retain_grad()
        result = loss(out.rgb, step=step, total_steps=config.steps, generator=generator)
        if not torch.isfinite(result.loss):
            raise FloatingPointError(f"the generation loss became {float(result.loss)} at step {step + 1}; "
                                     "lower the learning rates or the guidance scale")
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()

        fallback_3d = _accumulate(densifier, params, means2d, out, cameras) or fallback_3d
        if densifier.due(step):
            params, optimizer = _refine(densifier, params, optimizer, lrs, fallback_3d, generator)

        if on_event is not None:
            done = step + 1
            elapsed = time.perf_counter() - start
            preview = None
            if config.preview_every and (done % config.preview_every == 0 or done == config.steps):
                with torch.no_grad():
                    shown = render(GaussianScene(**params).detach(), preview_cam, background=background,
                                   backend=config.render_backend).rgb[0]
                preview = to_uint8(shown)
            losses = {"loss": float(result.loss.detach()), **{k: float(v) for k, v in result.info.items()}}
            on_event(GenerateEvent(step=done, total=config.steps, losses=losses, elapsed_s=elapsed,
                                   eta_s=elapsed / done * (config.steps - done), num_gaussians=int(params["means"].shape[0]),
                                   resolution=resolution, preview=preview))

    return GaussianScene(**{n: t.detach() for n, t in params.items()})


def _accumulate(densifier: MaskedDensifier, params: dict[str, Tensor], means2d, out, cameras: Cameras) -> bool:
    """Feed this step's positional gradients to the densifier; True when it had to use the 3D fallback."""
    if not densifier.config.enabled:
        return False
    radii = out.meta.get("radii")
    if isinstance(means2d, Tensor) and means2d.grad is not None and isinstance(radii, Tensor):
        visible = (radii > 0).all(dim=-1) if radii.dim() == 3 else radii > 0
        densifier.accumulate(means2d.grad, visible, cameras.width, cameras.height)
        return False
    if params["means"].grad is not None:
        densifier.accumulate_3d(params["means"].grad)
        return True
    return False


def _refine(densifier: MaskedDensifier, params: dict[str, Tensor], optimizer: torch.optim.Optimizer,
            lrs: dict[str, float], fallback_3d: bool, generator: torch.Generator):
    """Clone/split/prune every Gaussian; Adam's moments follow their rows (zero for new ones)."""
    refinement = densifier.refine(params, fallback_3d=fallback_3d, generator=generator)
    if not refinement.changed:
        return params, optimizer
    new_params = {n: t.detach().clone().requires_grad_(True) for n, t in refinement.params.items()}
    means_lr = next(g["lr"] for g in optimizer.param_groups if g["name"] == "means")
    new_optimizer = make_optimizer(new_params, {**lrs, "means": means_lr})
    remap_adam_state(optimizer, new_optimizer, params, new_params, refinement.parent, refinement.reset_state)
    return new_params, new_optimizer
