"""What defines one edit job, and the checks that refuse a bad one before any work.

`EditConfig` holds every setting (the `python -m engine edit` flags map onto its fields); `check_edit_inputs`
refuses, with a ValueError that says what to fix, an empty or wrong-length mask, an empty prompt, DDS without a
source prompt, NaN/Inf parameters, out-of-range resolution or steps, an unknown method, and so on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..guidance.methods import DIFFUSION, EDIT_METHODS, SCHEDULES, Defaults, family_of, method_info, resolve
from ..optimize.adam import check_final_fraction
from ..optimize.densify import DensifyConfig
from ..scene import PARAM_NAMES, GaussianScene, SceneError
from .prior_removal import PriorRemoval
from .region import Box

METHODS = EDIT_METHODS  # engine/guidance/methods.py: sds dds romap ism nfsd csd esd dreamcatalyst lusd
EDIT_KINDS = ("auto", "appearance", "shape")
GEOMETRY = ("means", "scales", "quats", "opacities")
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048
MAX_STEPS = 100_000


@dataclass
class LearningRates:
    """Adam learning rate of each parameter group (raw parameters; see engine/scene.py)."""

    means: float = 0.0015
    """Positions, as a fraction of the part's framing radius per step (scaled by it at the start). Larger
    than a reconstruction's because a reshape must move Gaussians by a good part of the part's size within a
    few hundred steps; the edit region bounds where they can go."""
    scales: float = 0.01
    """Log-scales (2x DreamGaussian's: a reshape that doubles a part's size needs log 2 = 0.69 of travel)."""
    quats: float = 0.001
    """Unnormalized quaternions."""
    opacities: float = 0.05
    """Opacity logits (3DGS's and DreamGaussian's 0.05: removing a part takes its logits from ~4 to below -5)."""
    sh0: float = 0.03
    """Degree-0 colour coefficients (colour = 0.282 * sh0 + 0.5): the group an appearance edit moves most.
    Under Adam 0.03 moves a colour by up to ~0.0085 per step: yellow -> blue (~2.8 units of sh0) fits in a
    150-step edit. It is 3x DreamGaussian's 0.01 because an edit has far fewer steps than a generation; the
    colour is not decayed: a part visible in a third of the views gets a gradient a third of the time, and
    Adam's normalized steps are already smaller than the rate when the gradient's size varies with t."""
    shN: float = 0.0015
    """Higher SH bands (view-dependent colour)."""

    means_final_fraction: float = 0.1
    """The positions' rate decays exponentially to this fraction by the last step (as 3DGS does), so moved
    Gaussians settle; the other groups keep their rates (engine/optimize/adam.py's `position_rate`)."""

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}


@dataclass
class EditConfig:
    """Everything that defines one edit job (the `python -m engine edit` flags map onto these fields)."""

    prompt: str = ""
    """What the masked part should become, e.g. "a red scarf"."""
    source_prompt: str = ""
    """What the part is now (required by dds and dreamcatalyst, which distil the difference source -> target;
    optional for lusd, whose empty source is the unconditional prediction)."""
    method: str = "sds"
    """sds: masked score distillation; dds: delta denoising score; romap: masked SDS + anchor toward part-edited
    2D images (SLaMP) + Gaussian prior removal; ism: interval score matching (LucidDreamer); nfsd: noise-free
    SDS; csd: classifier score distillation; esd: entropic SDS (closed-form stand-in for its LoRA);
    dreamcatalyst: DDS + identity pull, falling t; lusd: localized update SD. One line each, and the papers:
    engine/guidance/methods.py and each loss's module."""
    model: str = ""
    """Model spec (hub id, local directory or closed-form:<colour>); "" means engine.guidance's default. Used by
    the worker and the CLI to load the model; run_edit takes the loaded model as an argument."""
    steps: int = 500
    """Optimization steps."""
    resolution: int = 512
    """Render size (square) fed to the guidance; a multiple of the model's latent scale (8 for SD)."""
    batch_size: int = 1
    """Views rendered per step."""
    guidance_scale: float | None = None
    """Classifier-free guidance scale; None: the method's (engine/guidance/methods.py): 100 for sds/romap
    (DreamFusion; RoMaP's config: score distillation needs a large scale) and esd (its prior term is SDS's); 7.5
    for dds (DDS paper), ism (LucidDreamer), nfsd (NFSD: "nominal CFG"), dreamcatalyst (its released code); 2
    for csd (classifier score weight s - 1 = 1, CSD's released configs); lusd does not use it. The same on both
    model families (guidance on the flow's velocity equals it on epsilon; RoMaP's SD3 config uses 100)."""
    seed: int = 0
    """Seeds cameras, timesteps, noise and densification: the same seed gives the same result on CPU."""
    t_min: float | None = None
    """Lowest diffusion timestep, as a fraction of the model's training timesteps. None: the method's, 0.02 for
    most; 0.2 for dreamcatalyst and 0.05 for lusd (their released code). On a rectified-flow model (SD3 class,
    detected from its config) 0.3 for all but dreamcatalyst and lusd: RoMaP's released SD3 config."""
    t_max: float | None = None
    """Highest diffusion timestep at the first step. None: the method's, 0.98 for most (also RoMaP's on SD3); 0.9
    for dreamcatalyst, 0.95 for lusd (their released code)."""
    schedule: str | None = None
    """How t moves over the run: "random" (uniform in [t_min, t_max], t_max annealed to t_max_end), "dreamtime"
    (DreamTime's deterministic, non-increasing t, Huang et al. 2023: engine/guidance/dreamtime.py) or "linear"
    (t falls linearly from t_max to t_min). None: the method's, "linear" for dreamcatalyst (its paper), "random"
    for the rest."""
    t_max_end: float | None = None
    """t_max is annealed linearly to this value by the last step (coarse first, then detail). None: 0.5 for
    sds/romap (large t sets the part's layout early, small t refines it; DreamTime/HiFA-style annealing, and
    an edit must keep more of its input than a generation), no annealing for dds (its paper samples
    [0.02, 0.98] throughout: the source term cancels what large t would destroy), none on a rectified-flow
    model (RoMaP's SD3 config samples [0.3, 0.98] throughout). Set it equal to t_max to turn annealing off."""
    lr: LearningRates = field(default_factory=LearningRates)
    """Learning rates per parameter group."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Clone/split/prune inside the mask."""
    prior: PriorRemoval = field(default_factory=PriorRemoval)
    """Gaussian prior removal before the edit (on by default for romap only): the part's base colour reset to
    grey, its view-dependent SH bands (a capture's lighting) kept (`keep_view_dependent`)."""
    anchor_weight: float = 1.0
    """romap: weight of the L1 anchor loss toward the part-edited images (passed to the RoMaP loss)."""
    anchor_refresh: int = 50
    """romap: every this many steps (K) a fresh pool of views is drawn and its part-edited anchor images are made
    from the current renders (50: ten pools of views over a 500-step edit, so every side of the part is anchored)."""
    anchor_views: int = 8
    """romap: views per pool (romap steps render only pool views: those that have anchor images)."""
    mask_threshold: float = 0.5
    """Gaussians with mask weight above this are optimized; all others are left bit-identical."""
    fov_y_deg: float = 45.0
    """Vertical field of view of the sampled cameras."""
    elevation_range: tuple[float, float] = (-10.0, 60.0)
    """Camera elevation range in degrees above the plane orthogonal to `up`."""
    radius_range: tuple[float, float] = (1.0, 1.6)
    """Camera distance as multiples of the radius that frames the masked part."""
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """World up direction for the orbit."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour of the renders (previews always use it)."""
    random_background: float = 0.5
    """Probability that a step (RoMaP: a refresh of the anchor pool) renders over a random colour instead: a
    removed Gaussian must become transparent, not background-coloured (DreamFusion's augmentation)."""
    preview_every: int = 10
    """Emit a preview image every this many steps (0: never)."""
    preview_resolution: int = 256
    """Size (square) of preview images."""
    render_backend: str = "auto"
    """engine.render backend."""
    edit: str = "auto"
    """What may change. appearance: colour only, geometry kept exactly (positions, scales, rotations, opacities
    bit-identical, no Gaussian added or removed); shape: everything moves, densifies and may grow into the
    region's boxes; auto (the default, in the app, the CLI and batch): colour only for the first `shape_probe`
    of the steps; if the prior still pushes the renders nearly as hard as at the start (`shape_residual`), the
    edit runs again from the input with geometry unlocked after `appearance_fraction` (shape_gate.py).
    A recolour or material edit
    thus stays colour-only (colour explains it: the push falls), a reshape, addition or removal gets geometry
    (colour cannot: the push stays)."""
    appearance_fraction: float = 0.1
    """auto, once the probe found that geometry is needed: the edit runs again from the input, colour only for
    this fraction of the steps, then geometry (0.1 vs 0.25 and 0.3 on bench/edit_quality.py's antenna cases:
    +2 dB reshape, +5 dB removal, -1.6 dB recolour, still > 35 dB)."""
    shape_probe: float = 0.25
    """auto: the colour-only steps (as a fraction of `steps`) after which the loop decides whether the edit
    needs geometry. Long enough for the push of a recolour to fall measurably (at 400 steps: 100 colour-only
    steps, after which the bundled recolours push at 0.33-0.55 of their start); a shape edit pays these steps
    on top of its own."""
    shape_residual: float = 0.7
    """auto: geometry unlocks when the mean push of the last third of the colour-only steps is above this
    fraction of that of the first third (bundled suite after 100 colour-only steps: recolours 0.33-0.55,
    reshape/add/remove 0.83-1.09). A constant-colour closed-form prior is a recolour: never unlocked."""
    colour_carry: bool = True
    """An edit that stayed colour-only ends by giving its poorly observed masked Gaussians (small, thin, rarely
    seen: little colour gradient) the colour change their well observed neighbours imply
    (engine/edit/colour_carry.py), so no patch of the old colour shows from the sides, below or up close."""
    carry_share: float = 0.5
    """colour_carry: a row counts as well observed (keeps what it learned) from this share of the part's median
    colour gradient; below it, it takes its neighbours' change in proportion to what it lacks."""
    region_margin: float = 0.5
    """The edit region is the selected Gaussians dilated by their size plus this margin, as a fraction of the
    part's radius (0.5: a part may grow by half its radius; engine/edit/region.py)."""
    region_boxes: tuple = ()
    """Extra volumes (engine.edit.Box, world units) the edit may fill, e.g. the empty space above a head
    for a hat: a shape edit seeds their empty voxels with faint Gaussians."""
    seed_opacity: float = 0.05
    """Opacity of the Gaussians seeded in the region boxes' empty space (faint: they must earn their place)."""
    max_seeds: int = 3000
    """At most this many seeded Gaussians (spread evenly over the empty space)."""
    max_scale_growth: float = 1.5
    """Trainable Gaussians' largest axis is capped at this multiple of the selection's 98th-percentile size:
    a part that grows is covered by densification (splits), not by a few discs blown up past their
    neighbours (1.5 vs 2.5: spill 0.8% -> 0.4% on the antenna reshape, whose target doubles every scale)."""
    min_visible_fraction: float = 0.25
    """A sampled view is redrawn (up to 8 times) when less than this fraction of the part's silhouette is
    visible in it (hidden behind the rest of the scene or out of frame): such views cost a model call and
    push nothing useful."""
    view_pool: int = 32
    """The edit looks from this many orbit views at a time (engine/edit/view_pool.py): each keeps its region
    mask and its frozen rows drawn once, so a step costs what the part costs."""
    view_refresh: int = 0
    """Every this many steps the pool's oldest view is replaced by a fresh one, so a long edit sees many views
    (32 fixed views lost 1-3 dB on the robot's held-out views). 0: by scene size, every step up to 150k
    Gaussians (a fresh view costs about a forward render), one step more per 150k, at most every 8 steps."""

    def resolved(self, family: str = DIFFUSION) -> Defaults:
        """Guidance scale, t range, annealing end and schedule this edit runs with on a model of `family`
        ("diffusion" | "flow", `engine.guidance.methods.family_of(model)`): each field set here as set, every None
        the method's default for that family (engine/guidance/methods.py's `resolve`)."""
        return resolve(self.method, family, guidance_scale=self.guidance_scale, t_min=self.t_min, t_max=self.t_max,
                       t_max_end=self.t_max_end, schedule=self.schedule)

    def effective_t_range(self, family: str = DIFFUSION) -> tuple[float, float]:
        """(t_min, t_max), each the method's default for `family` where None."""
        d = self.resolved(family)
        return d.t_min, d.t_max

    def effective_t_max_end(self, family: str = DIFFUSION) -> float:
        """`t_max_end`, or for None the method's default: 0.5 (at most t_max) for the annealed methods (sds, romap,
        ism, nfsd, csd, esd) on the diffusion family, t_max (no annealing) for dds, dreamcatalyst, lusd and every
        method on the flow family."""
        return self.resolved(family).t_max_end

    def effective_guidance_scale(self, family: str = DIFFUSION) -> float:
        return self.resolved(family).guidance_scale

    def effective_schedule(self, family: str = DIFFUSION) -> str:
        return self.resolved(family).schedule


def as_mask(mask_weights, num: int) -> Tensor:
    """A float32 mask [num] from a tensor, numpy array or list of floats/bools; ValueError if it cannot be."""
    try:
        mask = torch.as_tensor(np.asarray(mask_weights.detach().cpu() if isinstance(mask_weights, Tensor)
                                          else mask_weights))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the mask must be an array of per-Gaussian weights: {exc}") from exc
    if mask.dim() != 1:
        raise ValueError(f"the mask must be a 1-D array of per-Gaussian weights, got shape {list(mask.shape)}")
    if mask.shape[0] != num:
        raise ValueError(f"the mask has {mask.shape[0]} weights but the scene has {num} Gaussians; "
                         "make the mask for this scene")
    if mask.dtype == torch.bool:
        mask = mask.float()
    if not (mask.dtype.is_floating_point or mask.dtype in (torch.int8, torch.uint8, torch.int16, torch.int32,
                                                           torch.int64)):
        raise ValueError(f"the mask must hold float weights or booleans, got {mask.dtype}")
    mask = mask.float()
    if not torch.isfinite(mask).all():
        raise ValueError("the mask contains NaN/Inf weights; weights must be in [0, 1]")
    if mask.numel() and (mask.min() < 0 or mask.max() > 1):
        raise ValueError(f"mask weights must be in [0, 1], got [{float(mask.min()):g}, {float(mask.max()):g}]")
    return mask


def check_edit_inputs(scene: GaussianScene, mask_weights, config: EditConfig, model=None) -> Tensor:
    """Refuse anything that cannot give a meaningful edit, before any work; returns the mask as float32 [N]."""
    if config.method not in METHODS:
        raise ValueError(f"unknown edit method {config.method!r}; choose one of {', '.join(METHODS)}")
    if not config.prompt or not config.prompt.strip():
        raise ValueError("the prompt is empty; describe what the masked part should become")
    info = method_info(config.method)
    if info.source == "required" and not (config.source_prompt and config.source_prompt.strip()):
        raise ValueError(f"{info.label} needs a source prompt describing the part as it is now (--source-prompt)")
    if info.classifier_only and _weight_free(model):
        raise ValueError(f"{info.label} distils only what the prompt changes in the model's prediction; the weight-"
                         "free priors (closed-form:, reference:) predict the same for every prompt, so it would "
                         "change nothing: use a diffusion model, or another method")
    if config.schedule is not None and config.schedule not in SCHEDULES:
        raise ValueError(f"unknown timestep schedule {config.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not isinstance(config.steps, int) or not 1 <= config.steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {config.steps!r}")
    if not isinstance(config.resolution, int) or not MIN_RESOLUTION <= config.resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be an integer in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], "
                         f"got {config.resolution!r}")
    scale = int(getattr(model, "latent_scale", 1) or 1)
    if config.resolution % scale:
        raise ValueError(f"resolution {config.resolution} must be a multiple of {scale} for this model "
                         f"(try {max(scale, config.resolution // scale * scale)})")
    if not 1 <= config.batch_size <= 64:
        raise ValueError(f"batch_size must be in [1, 64], got {config.batch_size}")
    if config.guidance_scale is not None and not (math.isfinite(config.guidance_scale) and config.guidance_scale > 0):
        raise ValueError(f"guidance_scale must be a positive number, got {config.guidance_scale}")
    t_min, t_max = config.effective_t_range(family_of(model))
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min <= t_max <= 1, got t_min={t_min}, t_max={t_max}")
    if config.t_max_end is not None and not t_min <= config.t_max_end <= 1.0:
        raise ValueError(f"t_max_end must be in [t_min, 1], got {config.t_max_end}")
    for name, value in config.lr.as_dict().items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"learning rate for {name} must be a finite number >= 0, got {value}")
    check_final_fraction(config.lr.means_final_fraction)
    if not 0.0 <= config.mask_threshold < 1.0:
        raise ValueError(f"mask_threshold must be in [0, 1), got {config.mask_threshold}")
    if config.method == "romap" and (config.anchor_refresh < 1 or config.anchor_views < 1):
        raise ValueError("romap needs anchor_refresh >= 1 and anchor_views >= 1")
    if config.preview_every < 0:
        raise ValueError(f"preview_every must be >= 0, got {config.preview_every}")
    if config.edit not in EDIT_KINDS:
        raise ValueError(f"unknown edit kind {config.edit!r}; choose one of {', '.join(EDIT_KINDS)}")
    if not 0.0 <= config.random_background <= 1.0:
        raise ValueError(f"random_background must be a probability in [0, 1], got {config.random_background}")
    if not 0.0 <= config.shape_probe <= 1.0:
        raise ValueError(f"shape_probe must be in [0, 1], got {config.shape_probe}")
    if not 0.0 <= config.appearance_fraction <= 1.0:
        raise ValueError(f"appearance_fraction must be in [0, 1], got {config.appearance_fraction}")
    if not (math.isfinite(config.carry_share) and config.carry_share > 0):
        raise ValueError(f"carry_share must be a finite number > 0, got {config.carry_share}")
    if not (math.isfinite(config.shape_residual) and config.shape_residual >= 0):
        raise ValueError(f"shape_residual must be a finite number >= 0, got {config.shape_residual}")
    if not (math.isfinite(config.region_margin) and config.region_margin >= 0):
        raise ValueError(f"region_margin must be a finite number >= 0, got {config.region_margin}")
    if not all(isinstance(b, Box) for b in config.region_boxes):
        raise ValueError("region_boxes must be engine.edit.Box volumes")
    if not 0.0 < config.seed_opacity < 1.0:
        raise ValueError(f"seed_opacity must be in (0, 1), got {config.seed_opacity}")
    if not isinstance(config.view_pool, int) or not 1 <= config.view_pool <= 1024:
        raise ValueError(f"view_pool must be an integer in [1, 1024], got {config.view_pool}")
    if not isinstance(config.view_refresh, int) or config.view_refresh < 0:  # 0: by scene size
        raise ValueError(f"view_refresh must be an integer >= 0, got {config.view_refresh}")
    if not 0.0 <= config.min_visible_fraction < 1.0:
        raise ValueError(f"min_visible_fraction must be in [0, 1), got {config.min_visible_fraction}")
    if not config.max_scale_growth >= 1.0:
        raise ValueError(f"max_scale_growth must be >= 1, got {config.max_scale_growth}")
    config.prior.check()
    if len(scene) == 0:
        raise ValueError("the scene is empty; load a scene with Gaussians first")
    try:
        scene.validate(check_finite=True)
    except SceneError as exc:
        raise ValueError(f"the scene cannot be edited: {exc}; repair or reload the scene") from exc
    mask = as_mask(mask_weights, len(scene))
    if not bool((mask > 0).any()):
        raise ValueError("the mask is empty (all weights are 0); select the part to edit first")
    if not bool((mask > config.mask_threshold).any()):
        raise ValueError(f"no Gaussian has mask weight above {config.mask_threshold} (largest is "
                         f"{float(mask.max()):.3g}); strengthen the mask or lower mask_threshold")
    return mask


def _weight_free(model) -> bool:
    """The closed-form and reference priors: one distribution per prompt, whatever the prompt says."""
    from ..guidance.closed_form import ClosedFormPrior
    from ..guidance.reference import ReferencePrior

    return isinstance(model, (ClosedFormPrior, ReferencePrior))
