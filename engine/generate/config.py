"""What defines one text-to-3D job, and the check that refuses a bad one before any work.

`check_generate_config` refuses an empty prompt, an unknown method or primitive, a missing init file, step
counts outside [1, 100000], resolutions outside [16, 2048] or not a multiple of the model's latent scale, with a
ValueError that says what to fix (init.py's `initial_scene` refuses an unreadable or empty init file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..guidance.methods import DIFFUSION, GENERATE_METHODS, SCHEDULES, Defaults, family_of, method_info, resolve
from ..optimize.adam import check_final_fraction
from ..optimize.densify import DensifyConfig
from ..scene import PARAM_NAMES
from .init import PRIMITIVES, is_primitive

METHODS = GENERATE_METHODS  # engine/guidance/methods.py: sds ism nfsd csd esd
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048
MAX_STEPS = 100_000
MAX_INITIAL_GAUSSIANS = 10_000_000


@dataclass
class GenerateLearningRates:
    """Adam learning rate of each parameter group (raw parameters; see engine/scene.py)."""

    means: float = 0.002
    """Positions, as a fraction of the object's half extent per step (scaled by it at the start)."""
    means_final_fraction: float = 0.02
    """The position rate decays exponentially to this fraction of `means` by the last step (1: constant;
    engine/optimize/adam.py's `position_rate`)."""
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
    without the random-noise term (see engine/guidance/ism.py); nfsd: noise-free SDS (Katzir et al.); csd:
    classifier score distillation (Yu et al.); esd: entropic SDS (Wang et al.; closed-form stand-in for its LoRA).
    Papers and one line each: engine/guidance/methods.py."""
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
    """Classifier-free guidance scale; None: the method's (engine/guidance/methods.py): 100 for sds
    (DreamFusion) and esd (its prior term is SDS's), 7.5 for ism (LucidDreamer) and nfsd (NFSD's "nominal" scale),
    2 for csd (classifier score weight s - 1 = 1, CSD's released configs)."""
    seed: int = 0
    """Seeds the initial primitive, cameras, timesteps, noise and densification: same seed, same result on CPU."""
    t_min: float | None = None
    """Lowest diffusion timestep, as a fraction of the model's training timesteps. None: the method's default for
    the model's family (engine/guidance/methods.py): 0.02 on the diffusion family, 0.3 on a rectified-flow (SD3
    class) model, RoMaP's released SD3 range."""
    t_max: float | None = None
    """Highest diffusion timestep at the first step. None: 0.98 (both families)."""
    schedule: str | None = None
    """How t moves over the run: "random" (uniform in [t_min, t_max], t_max annealed to t_max_end), "dreamtime"
    (DreamTime's deterministic, non-increasing t, Huang et al. 2023: engine/guidance/dreamtime.py) or "linear"
    (t falls linearly from t_max to t_min); the monotone ones ignore t_max_end. None: "random" (every
    generation method's default)."""
    t_max_end: float | None = None
    """t_max is annealed linearly to this by the last step (coarse shape first, then detail). None: the
    method's default, 0.5 (at most t_max) on the diffusion family, no annealing on the flow family (RoMaP's
    config samples [0.3, 0.98] throughout). Set it equal to t_max to turn annealing off."""
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
    """Clone/split/prune over the whole scene (engine/optimize/densify.py)."""
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

    def resolved(self, family: str = DIFFUSION) -> Defaults:
        """Guidance scale, t range, annealing end and schedule on a model of `family` ("diffusion" | "flow"):
        each field set here as set, every None the method's default for that family (methods.resolve)."""
        return resolve(self.method, family, guidance_scale=self.guidance_scale, t_min=self.t_min, t_max=self.t_max,
                       t_max_end=self.t_max_end, schedule=self.schedule)

    def effective_t_max_end(self, family: str = DIFFUSION) -> float:
        """`t_max_end`, or for None the default: 0.5 (at most t_max) on the diffusion family, t_max on the flow's."""
        return self.resolved(family).t_max_end

    def effective_guidance_scale(self, family: str = DIFFUSION) -> float:
        return self.resolved(family).guidance_scale

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
    if config.schedule is not None and config.schedule not in SCHEDULES:
        raise ValueError(f"unknown timestep schedule {config.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if method_info(config.method).classifier_only and _weight_free(model):
        raise ValueError(f"{config.method} distils only what the prompt changes in the model's prediction; the "
                         "weight-free priors (closed-form:, reference:) predict the same for every prompt: use a "
                         "diffusion model, or another method")
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
    run = config.resolved(family_of(model))
    if not 0.0 <= run.t_min <= run.t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min <= t_max <= 1, got t_min={run.t_min}, t_max={run.t_max}")
    if config.t_max_end is not None and not run.t_min <= config.t_max_end <= 1.0:
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
    check_final_fraction(config.lr.means_final_fraction)
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


def _weight_free(model) -> bool:
    """The closed-form and reference priors: one distribution per prompt, whatever the prompt says."""
    from ..guidance.closed_form import ClosedFormPrior
    from ..guidance.reference import ReferencePrior

    return isinstance(model, (ClosedFormPrior, ReferencePrior))
