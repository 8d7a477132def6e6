"""One edit job: masked score distillation of the part of a scene selected by a per-Gaussian mask.

Follow one step of `run_edit`:

1. sample orbit cameras around the part (`PartOrbit`), redrawing views that see too little of it;
2. project the job's fixed **edit region** into those views (engine/edit_region.py): that 2D mask is the same
   for every loss (SDS's latent mask, RoMaP's anchor weight, SLaMP's mixing mask) and never follows where the
   masked Gaussians have moved;
3. render the current scene — the frozen (unmasked) Gaussians concatenated with the trainable (masked) ones;
   the rendered image's gradient is multiplied by the region's mask, so no pixel outside the region pushes
   anything (a latent-space mask alone does not confine the gradient: through a VAE about half of it leaks);
4. ask the guidance loss (SDS, DDS or RoMaP, from engine.guidance) for a loss on the renders, with the 2D mask,
   the original renders of the same views (DDS) and RoMaP's part-edited anchor images;
5. backpropagate, scale each trainable Gaussian's gradient and step by its soft mask weight, take an Adam
   step, then keep the trainable Gaussians inside the region: a step that would take a centre out of the region
   is undone for that Gaussian, and scales are capped;
6. densify/prune inside the mask on schedule (engine/densify.py), dropping children born outside the region;
   report progress and, every few steps, a preview image (and, for the weight-free priors, the PSNR of the
   preview against the ideal edit).

Appearance vs shape (`EditConfig.edit`): an appearance edit keeps positions, scales, rotations and opacities
exactly as they were and optimizes colour only; a shape edit optimizes everything, densifies, and seeds the
empty space of the user's region boxes with faint Gaussians that the edit can grow into new geometry; `auto`
(the default) runs the first `appearance_fraction` of the steps as an appearance edit and then unlocks shape, so
a recolour is finished by colour before geometry can move, while a reshape/add/remove still gets its geometry.

Why Gaussians outside the mask stay bit-identical: they are never optimizer parameters. `MaskedParams` keeps
them as a detached copy and only the masked rows are leaf tensors; the result is assembled from that copy.

The weight-free priors make the ideal edit known: `reference:SCENE` wants each view to look like SCENE's render,
and `closed-form:<colour>` is turned here into "the masked part recoloured" (engine/reference_prior.py), so the
demo mode shows what a clean edit looks like instead of a frame flooded with one colour.

Before any work `check_edit_inputs` refuses bad input (empty mask, wrong length, empty prompt, DDS without a
source prompt, NaN/Inf parameters, out-of-range resolution or steps, unknown method) with a ValueError that says
what to fix. Cancelling (`should_stop()` returns True, checked before every step) returns the input unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .camera import Cameras, framing_radius, orbit_cameras, sample_orbit_cameras
from .densify import DensifyConfig, MaskedDensifier, Refinement, remap_adam_state
from .edit_region import Box, EditRegion
from .optimize import make_optimizer, to_uint8
from .prior_removal import PriorRemoval, remove_prior
from .reference_prior import ReferencePrior, ViewAwareModel, recolour_part
from .render import render
from .scene import PARAM_NAMES, GaussianScene, SceneError

METHODS = ("sds", "dds", "romap")
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
    Gaussians settle; the other groups keep their rates."""

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}

    def decay(self, name: str, step: int, total: int) -> float:
        """The factor applied to group `name`'s rate at `step` of `total`."""
        if name != "means":
            return 1.0
        return float(self.means_final_fraction) ** (step / max(total - 1, 1))


@dataclass
class EditConfig:
    """Everything that defines one edit job (the `python -m engine edit` flags map onto these fields)."""

    prompt: str = ""
    """What the masked part should become, e.g. "a red scarf"."""
    source_prompt: str = ""
    """What the part is now (required by DDS, which distils the difference source -> target)."""
    method: str = "sds"
    """sds: masked score distillation; dds: delta denoising score; romap: masked SDS + anchor toward part-edited
    2D images (SLaMP) + Gaussian prior removal."""
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
    """Classifier-free guidance scale; None: 100 for sds/romap (score distillation needs a large scale), 7.5 for
    dds (the difference of two guided predictions)."""
    seed: int = 0
    """Seeds cameras, timesteps, noise and densification: the same seed gives the same result on CPU."""
    t_min: float = 0.02
    """Lowest diffusion timestep, as a fraction of the model's training timesteps."""
    t_max: float = 0.98
    """Highest diffusion timestep at the first step."""
    t_max_end: float | None = None
    """t_max is annealed linearly to this value by the last step (coarse first, then detail). None: 0.5 for
    sds/romap (large t sets the part's layout early, small t refines it; DreamTime/HiFA-style annealing, and
    an edit must keep more of its input than a generation), no annealing for dds (its paper samples
    [0.02, 0.98] throughout: the source term cancels what large t would destroy). Set it equal to t_max to
    turn annealing off."""
    lr: LearningRates = field(default_factory=LearningRates)
    """Learning rates per parameter group."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Clone/split/prune inside the mask."""
    prior: PriorRemoval = field(default_factory=PriorRemoval)
    """Gaussian prior removal before the edit (on by default for romap only)."""
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
    """appearance: colour only, geometry kept exactly; shape: everything moves, densifies and may grow into the
    region's boxes; auto: appearance for the first `appearance_fraction` of the steps, then shape."""
    appearance_fraction: float = 0.1
    """auto: the fraction of the steps run as an appearance edit before geometry is unlocked. Short: a
    colour change is mostly done within it, and a reshape or removal needs the remaining steps (0.1 vs 0.25
    and 0.3 on bench/edit_quality.py's antenna cases: +2 dB reshape, +5 dB removal, -1.6 dB recolour, still
    > 35 dB)."""
    region_margin: float = 0.5
    """The edit region is the selected Gaussians dilated by their size plus this margin, as a fraction of the
    part's radius (0.5: a part may grow by half its radius; engine/edit_region.py)."""
    region_boxes: tuple = ()
    """Extra volumes (engine.edit_region.Box, world units) the edit may fill, e.g. the empty space above a head
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

    def effective_t_max_end(self) -> float:
        if self.t_max_end is not None:
            return float(self.t_max_end)
        return float(self.t_max) if self.method == "dds" else min(0.5, float(self.t_max))

    def effective_guidance_scale(self) -> float:
        if self.guidance_scale is not None:
            return float(self.guidance_scale)
        return 7.5 if self.method == "dds" else 100.0


@dataclass
class EditEvent:
    """Progress of a running edit, reported after every step."""

    step: int  # steps done (1-based)
    total: int
    losses: dict[str, float]
    elapsed_s: float
    eta_s: float
    num_gaussians: int  # trainable (masked) Gaussians now
    preview: np.ndarray | None = None  # [H, W, 3] uint8, every `preview_every` steps
    scene: GaussianScene | None = None  # with each preview: the scene so far (detached CPU copy, for viewers)
    mask: Tensor | None = None  # [N'] the mask of `scene` (densification changes N)


@dataclass
class EditResult:
    """The edited scene and its mask (densification adds/removes masked rows, so the mask changes with it).

    When cancelled, `scene` and `mask` are the inputs, untouched.
    """

    scene: GaussianScene
    mask: Tensor  # [N'] float weights
    cancelled: bool = False
    steps_done: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    num_cloned: int = 0
    num_split: int = 0
    num_pruned: int = 0


# ---------------------------------------------------------------------------------------------- validation


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
    if config.method == "dds" and not (config.source_prompt and config.source_prompt.strip()):
        raise ValueError("DDS needs a source prompt describing the part as it is now (--source-prompt)")
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
    if not 0.0 <= config.t_min <= config.t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min <= t_max <= 1, got t_min={config.t_min}, t_max={config.t_max}")
    if config.t_max_end is not None and not config.t_min <= config.t_max_end <= 1.0:
        raise ValueError(f"t_max_end must be in [t_min, 1], got {config.t_max_end}")
    for name, value in config.lr.as_dict().items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"learning rate for {name} must be a finite number >= 0, got {value}")
    if not 0.0 < config.lr.means_final_fraction <= 1.0:
        raise ValueError(f"lr.means_final_fraction must be in (0, 1], got {config.lr.means_final_fraction}")
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
    if not 0.0 <= config.appearance_fraction <= 1.0:
        raise ValueError(f"appearance_fraction must be in [0, 1], got {config.appearance_fraction}")
    if not (math.isfinite(config.region_margin) and config.region_margin >= 0):
        raise ValueError(f"region_margin must be a finite number >= 0, got {config.region_margin}")
    if not all(isinstance(b, Box) for b in config.region_boxes):
        raise ValueError("region_boxes must be engine.edit_region.Box volumes")
    if not 0.0 < config.seed_opacity < 1.0:
        raise ValueError(f"seed_opacity must be in (0, 1), got {config.seed_opacity}")
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


# ---------------------------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class PartOrbit:
    """Cameras orbiting the masked part at a distance that frames it."""

    center: Tensor  # [3] float64
    radius: float  # distance at which the part fills the view
    fov_y_deg: float
    elevation_range: tuple[float, float]
    radius_range: tuple[float, float]
    up: tuple[float, float, float]
    resolution: int
    half_extent: float = 0.0  # the part's radius (world units), before framing

    @classmethod
    def around(cls, scene: GaussianScene, mask: Tensor, config: EditConfig) -> "PartOrbit":
        """Centre: the mask-weighted mean of the selected centres; extent: their weighted spread (robust to a
        few stray Gaussians), padded by their own sizes. Region boxes are framed too (an added hat is seen)."""
        sel = mask > config.mask_threshold
        means = scene.means.detach()[sel].double()
        w = mask[sel].double().to(means.device)
        for box in config.region_boxes:  # eight corners and the centre of each box, at the mean weight
            lo, hi = torch.tensor(box.lo, dtype=torch.float64), torch.tensor(box.hi, dtype=torch.float64)
            corners = torch.stack([torch.where(torch.tensor([(i >> k) & 1 for k in range(3)], dtype=torch.bool), hi, lo)
                                   for i in range(8)] + [(lo + hi) / 2]).to(means.device)
            means = torch.cat([means, corners])
            w = torch.cat([w, torch.full((9,), float(w.mean()) if w.numel() else 1.0, dtype=torch.float64,
                                         device=means.device) * max(1.0, sel.sum().item() / 90.0)])
        center = (means * w[:, None]).sum(0) / w.sum()
        dist = (means - center).norm(dim=-1)
        reach = float(torch.quantile(dist, 0.98)) if dist.numel() > 20 else float(dist.max())
        size = float(torch.exp(scene.scales.detach()[sel]).max(dim=-1).values.double().median()) if sel.any() else 0.0
        half_extent = max(reach + 2 * size, 1e-3)
        return cls(center.cpu(), framing_radius(half_extent, config.fov_y_deg), config.fov_y_deg,
                   tuple(config.elevation_range), tuple(config.radius_range), tuple(config.up), config.resolution,
                   half_extent)

    def sample(self, num: int, generator: torch.Generator) -> Cameras:
        lo, hi = self.radius_range
        return sample_orbit_cameras(
            num, self.center, radius_range=(lo * self.radius, hi * self.radius),
            elevation_range=self.elevation_range, width=self.resolution, height=self.resolution,
            fov_y_deg=self.fov_y_deg, up=self.up, generator=generator,
        )

    def ring(self, num: int, *, resolution: int | None = None, offset_deg: float = 0.0) -> Cameras:
        """`num` evenly spaced views at mid elevation and a middle distance (previews)."""
        res = resolution or self.resolution
        az = torch.arange(num, dtype=torch.float64) * (360.0 / num) + offset_deg
        el = torch.full((num,), sum(self.elevation_range) / 2, dtype=torch.float64)
        dist = self.radius * sum(self.radius_range) / 2
        return orbit_cameras(self.center, dist, az, el, width=res, height=res, fov_y_deg=self.fov_y_deg, up=self.up)


class ViewPicker:
    """Orbit views that see the part: candidates whose visible share of the part's silhouette is below
    `min_fraction` are redrawn (up to `tries` times; then the best candidate is kept).

    Visibility is measured on the *original* scene at 48 px: the part's silhouette alone vs the part's
    indicator composited behind everything else (occlusion included). A part with no selected Gaussians (a
    region made only of boxes) accepts every view.
    """

    SIZE = 48

    def __init__(self, orbit: PartOrbit, original: GaussianScene, selected: Tensor, min_fraction: float,
                 backend: str, tries: int = 8) -> None:
        self.orbit, self.min_fraction, self.tries, self.backend = orbit, float(min_fraction), tries, backend
        self.scene = original
        self.indicator = selected.to(original.dtype)[:, None]
        self.part = original.subset(selected)

    def visible_fraction(self, cameras: Cameras) -> Tensor:  # [C]
        if len(self.part) == 0:
            return torch.ones(len(cameras))
        small = cameras.with_size(self.SIZE, self.SIZE).to(self.scene.device, self.scene.dtype)
        with torch.no_grad():
            seen = render(self.scene, small, colors=self.indicator, backend=self.backend).rgb[..., 0]
            alone = render(self.part, small, colors=torch.ones_like(self.indicator[: len(self.part)]),
                           backend=self.backend).rgb[..., 0]
        area = alone.flatten(1).sum(1)
        return (seen.flatten(1).sum(1) / area.clamp_min(1e-6)).where(area > 0.5, torch.zeros_like(area)).cpu()

    def sample(self, num: int, generator: torch.Generator) -> Cameras:
        cameras = self.orbit.sample(num, generator)
        if self.min_fraction <= 0:
            return cameras
        best = self.visible_fraction(cameras)
        for _ in range(self.tries):
            bad = (best < self.min_fraction).nonzero().flatten()
            if bad.numel() == 0:
                break
            fresh = self.orbit.sample(int(bad.numel()), generator)
            score = self.visible_fraction(fresh)
            better = score > best[bad]
            rows, take = bad[better], better.nonzero().flatten()
            if rows.numel():
                cameras = Cameras(cameras.viewmats.index_copy(0, rows, fresh.viewmats[take]),
                                  cameras.Ks.index_copy(0, rows, fresh.Ks[take]), cameras.width, cameras.height)
                best[rows] = score[take]
        return cameras


# ---------------------------------------------------------------------------------------------- masked params


class MaskedParams:
    """The masked Gaussians as leaf tensors; the unmasked ones as a frozen copy in their original order.

    Each trainable row remembers `origin`, its row in the scene the edit started from (-1 for rows added by
    densification), so `assemble()` puts every row back where it was and appends the new ones.
    """

    def __init__(self, scene: GaussianScene, mask: Tensor, threshold: float) -> None:
        selected = mask > threshold
        index = torch.arange(len(scene), device=scene.device)
        self.num_start = len(scene)
        self.frozen = scene.subset(~selected).detach()
        self.frozen_index = index[~selected]
        self.frozen_weights = mask[~selected]
        trainable = scene.subset(selected)
        self.params: dict[str, Tensor] = {n: t.detach().clone().requires_grad_(True) for n, t in trainable.items()}
        self.weights = mask[selected].clone()  # [M]
        self.origin = index[selected]  # [M]

    @property
    def num_trainable(self) -> int:
        return int(self.weights.shape[0])

    def scene(self) -> GaussianScene:
        """Frozen rows first, then trainable rows: differentiable w.r.t. the trainable leaves."""
        return GaussianScene.trusted(**{n: torch.cat([getattr(self.frozen, n), self.params[n]]) for n in PARAM_NAMES})

    def all_weights(self) -> Tensor:  # [F + M], in `scene()` order
        return torch.cat([self.frozen_weights, self.weights])

    def replace_rows(self, params: dict[str, Tensor], parent: Tensor, appended: Tensor) -> None:
        """Adopt a densification result: new leaves; weights and origins follow each row's parent."""
        self.params = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
        self.weights = self.weights[parent]
        self.origin = torch.where(appended, torch.full_like(parent, -1), self.origin[parent])

    def assemble(self) -> tuple[GaussianScene, Tensor]:
        """The edited scene and mask: rows at their original positions (pruned ones gone), new rows last."""
        with torch.no_grad():
            full = self.scene().detach()
            new = self.origin < 0
            key = torch.cat([self.frozen_index, self.origin]).clone()
            key[len(self.frozen_index):][new] = self.num_start + torch.arange(int(new.sum()), device=key.device)
            order = torch.argsort(key)
            return full.subset(order), self.all_weights()[order]


# ---------------------------------------------------------------------------------------------- the job


def build_loss(config: EditConfig, model):
    """The guidance loss object (engine.guidance) for `config.method`, with the config's timesteps and scale."""
    from .guidance.dds import DDSLoss
    from .guidance.romap import RoMaPLoss
    from .guidance.sds import SDSLoss
    from .guidance.timesteps import TimestepSchedule

    timesteps = TimestepSchedule(t_min=config.t_min, t_max=config.t_max,
                                 t_max_end=max(config.effective_t_max_end(), config.t_min))
    scale = config.effective_guidance_scale()
    if config.method == "dds":
        return DDSLoss(model, config.prompt, config.source_prompt, guidance_scale=scale, timesteps=timesteps)
    if config.method == "romap":
        return RoMaPLoss(model, config.prompt, guidance_scale=scale, timesteps=timesteps,
                         anchor_weight=config.anchor_weight)
    return SDSLoss(model, config.prompt, guidance_scale=scale, timesteps=timesteps)


def edit_prior(model, original: GaussianScene, selected: Tensor, config: EditConfig):
    """The model the edit distils from. A constant-colour closed-form prior means "the part becomes this
    colour": it becomes a reference prior on the original with the selected Gaussians recoloured, so its ideal
    edit changes nothing outside the part. A reference prior is put on the edit's background."""
    from .guidance.closed_form import ClosedFormPrior

    if isinstance(model, ClosedFormPrior) and model.target.dim() == 1:
        colour = tuple(float(c) for c in model.target.clamp(0, 1).cpu())
        return ReferencePrior(recolour_part(original.to("cpu"), selected.cpu(), colour),
                              background=tuple(config.background), data_std=model.data_std,
                              render_backend=config.render_backend, name=model.name)
    if isinstance(model, ReferencePrior):
        return model.with_background(tuple(config.background))
    return model


def _render(scene: GaussianScene, cameras: Cameras, config: EditConfig, background=None):
    bg = tuple(config.background) if background is None else tuple(background)
    return render(scene, cameras.to(scene.device, scene.dtype), background=bg, backend=config.render_backend)


def _render_plain(scene: GaussianScene, cameras: Cameras, config: EditConfig, background=None) -> Tensor:
    with torch.no_grad():
        return _render(scene, cameras, config, background).rgb


def _draw_background(config: EditConfig, generator: torch.Generator) -> tuple[float, float, float]:
    """`config.background`, or with probability `random_background` a uniformly random colour: over a
    background of one known colour, "this Gaussian is gone" and "this Gaussian has the background's colour"
    render the same, and a removal stalls at the second; a changing background tells them apart."""
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    if u[0] < config.random_background:
        return (u[1], u[2], u[3])
    return tuple(float(c) for c in config.background)


def _tell_views(model, cameras: Cameras, background) -> None:
    """A view-aware prior renders its targets from these cameras over this background."""
    if isinstance(model, ViewAwareModel):
        if hasattr(model, "set_background"):
            model.set_background(background)
        model.set_views(cameras)


def psnr(a: Tensor, b: Tensor, weight: Tensor | None = None) -> float:
    """PSNR in dB of images in [0, 1] ([..., 3]), optionally over the pixels weighted by `weight` ([..., 1])."""
    err = (a.float() - b.float()).pow(2)
    if weight is None:
        mse = float(err.mean())
    else:
        w = weight.float().expand_as(err)
        mse = float((err * w).sum() / w.sum().clamp_min(1e-8))
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))


@dataclass
class _Phase:
    """Which parameter groups move this step, and whether densification may run."""

    shape: bool

    @staticmethod
    def at(step: int, config: EditConfig) -> "_Phase":
        if config.edit == "appearance":
            return _Phase(False)
        if config.edit == "shape":
            return _Phase(True)
        return _Phase(step >= int(round(config.appearance_fraction * config.steps)))


def _seed_boxes(region: EditRegion, scene: GaussianScene, config: EditConfig) -> GaussianScene | None:
    """Faint round Gaussians on the empty voxels of the region's boxes (evenly thinned to `max_seeds`), grey,
    sized to touch their neighbours: raw material for an edit that adds something where nothing was."""
    if not config.region_boxes or config.edit == "appearance" or config.max_seeds <= 0:
        return None
    centres = region.empty_voxel_centres(scene)
    if centres.shape[0] == 0:
        return None
    in_box = torch.zeros(centres.shape[0], dtype=torch.bool)
    for box in config.region_boxes:
        lo, hi = torch.tensor(box.lo, dtype=torch.float64), torch.tensor(box.hi, dtype=torch.float64)
        in_box |= ((centres >= lo) & (centres <= hi)).all(dim=-1)
    centres = centres[in_box]
    stride = 1
    while centres.shape[0] > config.max_seeds * stride**3:
        stride += 1
    if stride > 1:  # keep every stride-th voxel along each axis
        idx = torch.floor((centres - region.origin) / region.cell).long()
        centres = centres[(idx % stride == 0).all(dim=-1)]
    n = centres.shape[0]
    if n == 0:
        return None
    dtype, device = scene.dtype, scene.device
    k = scene.shN.shape[1]
    return GaussianScene.create(
        means=centres.to(device, dtype),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype, device=device).expand(n, 4).clone(),
        scales=torch.full((n, 3), math.log(0.6 * stride * region.cell), dtype=dtype, device=device),
        opacities=torch.full((n,), math.log(config.seed_opacity / (1 - config.seed_opacity)), dtype=dtype,
                             device=device),
        sh0=torch.zeros(n, 1, 3, dtype=dtype, device=device),
        shN=torch.zeros(n, k, 3, dtype=dtype, device=device),
    )


def edit_region(scene: GaussianScene, mask: Tensor, config: EditConfig) -> tuple[EditRegion, PartOrbit]:
    """The region an edit of `scene` with `mask` may change, and the orbit framing it: what `run_edit` fixes
    before its first step (and what evaluations must use to count floaters the same way)."""
    orbit = PartOrbit.around(scene, mask, config)
    region = EditRegion.around(scene, mask > config.mask_threshold, margin=config.region_margin * orbit.half_extent,
                               boxes=tuple(config.region_boxes))
    return region, orbit


def run_edit(
    scene: GaussianScene,
    mask_weights,  # [N] float weights in [0, 1] or bool
    config: EditConfig,
    guidance_model,
    *,
    on_event: Callable[[EditEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loss_fn=None,
) -> EditResult:
    """Edit the masked part of `scene` toward `config.prompt`; see the module docstring.

    `guidance_model` is an engine.guidance model (load it with engine.guidance's loader); `loss_fn` overrides
    the loss built from `config.method` (tests inject failing or instrumented losses). `should_stop` is polled
    before every step; when it returns True the job stops and the input scene is returned unchanged.
    """
    mask_in = check_edit_inputs(scene, mask_weights, config, guidance_model)
    device = getattr(guidance_model, "device", scene.device)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(int(config.seed))
    original = scene.detach().to(device)
    mask = mask_in.to(device)
    selected = mask > config.mask_threshold
    region, orbit = edit_region(original, mask, config)
    model = edit_prior(guidance_model, original, selected, config)
    view_aware = isinstance(model, ViewAwareModel)
    picker = ViewPicker(orbit, original, selected, config.min_visible_fraction, config.render_backend)

    work, work_mask = original, mask
    if config.prior.active(config.method):
        work, work_mask = remove_prior(original, mask, config.prior, threshold=config.mask_threshold,
                                       generator=generator)
    seeds = _seed_boxes(region, work, config)
    if seeds is not None:
        work = GaussianScene.concat([work, seeds])
        work_mask = torch.cat([work_mask, torch.ones(len(seeds), dtype=work_mask.dtype, device=work_mask.device)])
    state = MaskedParams(work, work_mask, config.mask_threshold)
    sizes = torch.exp(original.scales.detach()[selected]).amax(dim=-1)
    max_log_scale = math.log(max(config.max_scale_growth * float(torch.quantile(sizes.float(), 0.98)),
                                 1e-6)) if sizes.numel() else math.log(region.cell)
    if seeds is not None:
        max_log_scale = max(max_log_scale, float(seeds.scales.max()))
    lrs = config.lr.as_dict()
    lrs["means"] *= orbit.radius
    optimizer = make_optimizer(state.params, lrs)
    densifier = MaskedDensifier(config.densify, config.steps, state.num_trainable, scene_scale=orbit.radius)
    loss = loss_fn if loss_fn is not None else build_loss(config, model)
    needs_originals = config.method == "dds"
    preview_cam = orbit.ring(1, resolution=config.preview_resolution, offset_deg=30.0)
    preview_mask = region.project(preview_cam, device=device, backend=config.render_backend) if view_aware else None
    preview_ideal = None  # the ideal preview image of a view-aware prior (made at the first preview)

    anchors = anchor_pool = anchor_masks = None
    losses: dict[str, float] = {}
    counts = {"num_cloned": 0, "num_split": 0, "num_pruned": 0}
    fallback_3d = False

    for step in range(config.steps):
        if should_stop is not None and should_stop():
            return EditResult(scene=scene, mask=mask_in, cancelled=True, steps_done=step, losses=losses)
        phase = _Phase.at(step, config)

        originals = step_anchors = None
        if config.method == "romap":
            if step % config.anchor_refresh == 0:  # a fresh pool of views, anchors from the current part
                background = _draw_background(config, generator)  # one per pool: the anchors are drawn on it
                anchor_pool = picker.sample(config.anchor_views, generator)
                anchor_masks = region.project(anchor_pool, device=device, backend=config.render_backend)
                anchors = _make_anchors(loss, model, state, anchor_pool, anchor_masks, config, step, generator,
                                        background)
            pick = torch.randint(len(anchor_pool), (config.batch_size,), generator=generator)
            cameras = anchor_pool[pick]
            mask2d = anchor_masks[pick.to(anchor_masks.device)]
            step_anchors = anchors[pick.to(anchors.device)]
        else:
            background = _draw_background(config, generator)
            cameras = picker.sample(config.batch_size, generator)
            mask2d = region.project(cameras, device=device, backend=config.render_backend)
        _tell_views(model, cameras, background)
        if needs_originals:  # the same render path as the current views: equal scenes give equal images
            originals = _render_plain(original, cameras, config, background)

        out = _render(state.scene(), cameras, config, background)
        images = out.rgb.clamp(0.0, 1.0)  # what a VAE may see (SH colours are only clamped at 0)
        image_grad: dict[str, Tensor] = {}
        if images.requires_grad:
            images.register_hook(lambda grad, m=mask2d: _confine(grad, m, image_grad))
        means2d = out.meta.get("means2d")
        if isinstance(means2d, Tensor) and means2d.requires_grad:
            means2d.retain_grad()
        result = loss(images, step=step, total_steps=config.steps, mask2d=mask2d, originals=originals,
                      anchors=step_anchors, generator=generator)
        if not torch.isfinite(result.loss):
            raise FloatingPointError(f"the edit loss became {float(result.loss)} at step {step + 1}; "
                                     "lower the learning rates or the guidance scale")
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = lrs[group["name"]] * config.lr.decay(group["name"], step, config.steps)
        if not phase.shape:
            for name in GEOMETRY:
                state.params[name].grad = None
        _gate_and_step(state, optimizer, region, max_log_scale)

        if phase.shape:
            fallback_3d = _accumulate_densify_stats(densifier, state, means2d, out, cameras) or fallback_3d
            if densifier.due(step):
                refinement = _inside(densifier.refine(state.params, fallback_3d=fallback_3d, generator=generator),
                                     region)
                densifier.reset(refinement.parent.numel(), densifier.grad_sum.device)  # rows after the region filter
                if refinement.changed:
                    optimizer = _adopt_refinement(state, refinement, optimizer, lrs)
                    for key in counts:
                        counts[key] += getattr(refinement, key)

        losses = {"loss": float(result.loss.detach()), **{k: float(v) for k, v in result.info.items()},
                  **_term_gradient_norms(image_grad.get("grad"), images, step_anchors, mask2d, loss)}
        if on_event is not None:
            done = step + 1
            elapsed = time.perf_counter() - start
            preview = snapshot = snapshot_mask = None
            if config.preview_every and (done % config.preview_every == 0 or done == config.steps):
                rendered = _render_plain(state.scene().detach(), preview_cam, config)
                if view_aware and preview_ideal is None:
                    _tell_views(model, preview_cam, tuple(config.background))
                    preview_ideal = model.target_images(preview_cam)
                preview = to_uint8(rendered[0])
                if preview_ideal is not None:
                    losses["psnr_ideal"] = psnr(rendered, preview_ideal.to(rendered.device), preview_mask)
                snapshot, snapshot_mask = state.assemble()
                snapshot, snapshot_mask = snapshot.to("cpu"), snapshot_mask.detach().cpu()
            on_event(EditEvent(step=done, total=config.steps, losses=losses, elapsed_s=elapsed,
                               eta_s=elapsed / done * (config.steps - done), num_gaussians=state.num_trainable,
                               preview=preview, scene=snapshot, mask=snapshot_mask))

    counts["num_pruned"] += _drop_faint(state, config)
    edited, edited_mask = state.assemble()
    return EditResult(
        scene=edited.to(scene.device), mask=edited_mask.to(mask_in.device), steps_done=config.steps,
        losses=losses, **counts,
    )


def _confine(grad: Tensor, mask2d: Tensor, keep: dict) -> Tensor:
    """Image-gradient hook: remember the gradient (for the per-term norms), pass on its part inside the region."""
    keep["grad"] = grad.detach()
    return grad * mask2d.to(grad.dtype)


def _term_gradient_norms(grad: Tensor | None, images: Tensor, anchors: Tensor | None, mask2d: Tensor,
                         loss) -> dict[str, float]:
    """How hard each loss term pushes the rendered pixels: the norm of its gradient w.r.t. the images.

    The anchor term sum(m |x - a|) / B has the closed-form gradient w m sign(x - a) / B, so the distillation
    term's share is the total minus that, with no second backward. Shown beside the loss so the balance of
    RoMaP's anchor against SDS is measured, not guessed."""
    if grad is None:
        return {}
    weight = getattr(loss, "anchor_weight", None)
    if anchors is None or weight is None:
        return {"grad_image": float(grad.norm())}
    with torch.no_grad():
        g_anchor = weight * mask2d.to(images.dtype) * torch.sign(images.detach() - anchors.to(images)) / images.shape[0]
        norms = torch.stack([(grad - g_anchor).norm(), g_anchor.norm()]).tolist()
    return {"grad_distill": norms[0], "grad_anchor": norms[1]}


def _make_anchors(loss, model, state: MaskedParams, pool: Cameras, masks: Tensor, config: EditConfig, step: int,
                  generator: torch.Generator, background) -> Tensor:
    """RoMaP's part-edited images [P, H, W, 3] of a freshly drawn pool of views, made from the *current*
    renders and the region's projected mask. The first ones start from the scene after prior removal (so the
    old look does not anchor the edit); later refreshes start from the partly edited part at a lower SLaMP
    strength (t_start falls linearly to half its value by the last step), so they refine what the 3D edit
    already agrees on instead of re-inventing the part independently in every view."""
    _tell_views(model, pool, background)
    slamp = getattr(loss, "slamp", None)
    if slamp is not None and step > 0:
        from dataclasses import replace

        strength = slamp.t_start * (1.0 - 0.5 * step / max(config.steps, 1))
        loss.slamp = replace(slamp, t_start=max(strength, slamp.t_stop))
    try:
        with torch.no_grad():
            images = _render_plain(state.scene().detach(), pool, config, background)
            return loss.make_anchors(images, masks, generator=generator).detach()
    finally:
        if slamp is not None:
            loss.slamp = slamp


def _gate_and_step(state: MaskedParams, optimizer: torch.optim.Optimizer, region: EditRegion | None = None,
                   max_log_scale: float | None = None) -> None:
    """Multiply gradients by the soft mask weight, step, scale each row's step by its weight too, then keep
    the rows inside the region: a row whose new centre left it takes back its old centre, and log-scales are
    capped at `max_log_scale`.

    Adam divides out any constant gradient scale, so scaling the gradient alone would let a weight of 0.6 move
    as fast as 1.0; scaling the step makes a soft weight a true per-Gaussian step size.
    """
    w = state.weights
    soft = bool((w < 1).any())
    before = {}
    for name, p in state.params.items():
        if p.grad is not None and soft:
            p.grad.mul_(w.view(-1, *([1] * (p.dim() - 1))).to(p.grad.dtype))
        if soft and p.grad is not None:
            before[name] = p.detach().clone()
    means = state.params["means"]
    old_means = before.get("means")
    if old_means is None and region is not None and means.grad is not None:
        old_means = means.detach().clone()
    optimizer.step()
    with torch.no_grad():
        if soft:
            for name, p in state.params.items():
                if name in before:
                    wv = w.view(-1, *([1] * (p.dim() - 1))).to(p.dtype)
                    p.copy_(before[name] + wv * (p - before[name]))
        if region is not None and old_means is not None:
            out = ~region.contains(means)
            if bool(out.any()):
                means[out] = old_means[out]
        if max_log_scale is not None and state.params["scales"].grad is not None:
            state.params["scales"].clamp_(max=max_log_scale)


def _inside(refinement: Refinement, region: EditRegion) -> Refinement:
    """The refinement without the rows whose centres lie outside the region (children of a split near its
    edge): they are pruned, never adopted."""
    keep = region.contains(refinement.params["means"])
    if bool(keep.all()):
        return refinement
    return Refinement(
        params={n: t[keep] for n, t in refinement.params.items()}, parent=refinement.parent[keep],
        appended=refinement.appended[keep], reset_state=refinement.reset_state[keep],
        num_cloned=refinement.num_cloned, num_split=refinement.num_split,
        num_pruned=refinement.num_pruned + int((~keep).sum()),
    )


def _drop_faint(state: MaskedParams, config: EditConfig, faded: float = 0.01) -> int:
    """At the end, remove what the edit made transparent or never grew: rows it added (seeds, clones) whose
    opacity stayed below `seed_opacity` (they did not earn their place; left in, they are haze), and
    original masked rows faded below `faded` (a removal the last refinement did not reach). Frozen rows are
    never touched. At least one trainable row is kept."""
    opacity = torch.sigmoid(state.params["opacities"].detach())
    new = state.origin < 0
    faint = (new & (opacity < config.seed_opacity)) | (~new & (opacity < faded))
    if not bool(faint.any()) or bool(faint.all()):
        return 0
    keep = ~faint
    state.params = {n: t.detach()[keep].clone().requires_grad_(True) for n, t in state.params.items()}
    state.weights, state.origin = state.weights[keep], state.origin[keep]
    return int(faint.sum())


def _accumulate_densify_stats(densifier: MaskedDensifier, state: MaskedParams, means2d, out,
                              cameras: Cameras) -> bool:
    """Feed this step's gradients to the densifier; True when it had to use the 3D fallback statistic."""
    if not densifier.config.enabled:
        return False
    num_frozen = len(state.frozen)
    radii = out.meta.get("radii")
    if isinstance(means2d, Tensor) and means2d.grad is not None and isinstance(radii, Tensor):
        grad = means2d.grad[:, num_frozen:]
        visible = (radii[:, num_frozen:] > 0).all(dim=-1) if radii.dim() == 3 else radii[:, num_frozen:] > 0
        densifier.accumulate(grad, visible, cameras.width, cameras.height)
        return False
    if state.params["means"].grad is not None:
        densifier.accumulate_3d(state.params["means"].grad)
        return True
    return False


def _adopt_refinement(state: MaskedParams, refinement, optimizer, lrs: dict[str, float]) -> torch.optim.Optimizer:
    """Swap in the densified rows and a new optimizer that carries the surviving rows' Adam moments."""
    old_params = state.params
    state.replace_rows(refinement.params, refinement.parent, refinement.appended)
    new_optimizer = make_optimizer(state.params, lrs)
    remap_adam_state(optimizer, new_optimizer, old_params, state.params, refinement.parent, refinement.reset_state)
    return new_optimizer
