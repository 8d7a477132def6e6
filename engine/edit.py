"""One edit job: masked score distillation of the part of a scene selected by a per-Gaussian mask.

Follow one step of `run_edit`:

1. sample orbit cameras around the masked part (`PartOrbit`);
2. render the current scene — the frozen (unmasked) Gaussians concatenated with the trainable (masked) ones —
   together with the mask as a fourth channel, which gives the projected 2D mask of those views for free;
3. ask the guidance loss (SDS, DDS or RoMaP, from engine.guidance) for a loss on the renders, with the 2D mask,
   the original renders of the same views (DDS / RoMaP) and RoMaP's part-edited anchor images;
4. backpropagate, scale each trainable Gaussian's gradient and step by its soft mask weight, take an Adam step;
5. densify/prune inside the mask on schedule (engine/densify.py); report progress and, every few steps, a
   preview image.

Why Gaussians outside the mask stay bit-identical: they are never optimizer parameters. `MaskedParams` keeps
them as a detached copy and only the masked rows are leaf tensors; the result is assembled from that copy.

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
from .densify import DensifyConfig, MaskedDensifier, remap_adam_state
from .optimize import make_optimizer, to_uint8
from .prior_removal import PriorRemoval, remove_prior
from .render import render
from .render.projection import view_colors
from .scene import PARAM_NAMES, GaussianScene, SceneError

METHODS = ("sds", "dds", "romap")
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048
MAX_STEPS = 100_000


@dataclass
class LearningRates:
    """Adam learning rate of each parameter group (raw parameters; see engine/scene.py)."""

    means: float = 0.0005
    """Positions, as a fraction of the part's framing radius per step (scaled by it at the start)."""
    scales: float = 0.005
    """Log-scales."""
    quats: float = 0.001
    """Unnormalized quaternions."""
    opacities: float = 0.02
    """Opacity logits."""
    sh0: float = 0.03
    """Degree-0 colour coefficients (colour = 0.282 * sh0 + 0.5): the group an appearance edit moves most."""
    shN: float = 0.0015
    """Higher SH bands (view-dependent colour)."""

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}


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
    """If set, t_max is annealed linearly to this value by the last step (coarse first, then detail)."""
    lr: LearningRates = field(default_factory=LearningRates)
    """Learning rates per parameter group."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Clone/split/prune inside the mask."""
    prior: PriorRemoval = field(default_factory=PriorRemoval)
    """Gaussian prior removal before the edit (on by default for romap only)."""
    anchor_weight: float = 1.0
    """romap: weight of the L1 anchor loss toward the part-edited images (passed to the RoMaP loss)."""
    anchor_refresh: int = 100
    """romap: the part-edited anchor images are remade every this many steps (K)."""
    anchor_views: int = 8
    """romap: size of the fixed pool of views that have anchor images (romap steps render these views)."""
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
    if not 0.0 <= config.mask_threshold < 1.0:
        raise ValueError(f"mask_threshold must be in [0, 1), got {config.mask_threshold}")
    if config.method == "romap" and (config.anchor_refresh < 1 or config.anchor_views < 1):
        raise ValueError("romap needs anchor_refresh >= 1 and anchor_views >= 1")
    if config.preview_every < 0:
        raise ValueError(f"preview_every must be >= 0, got {config.preview_every}")
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

    @classmethod
    def around(cls, scene: GaussianScene, mask: Tensor, config: EditConfig) -> "PartOrbit":
        """Centre: the mask-weighted mean of the selected centres; extent: their weighted spread (robust to a
        few stray Gaussians), padded by their own sizes."""
        sel = mask > config.mask_threshold
        means = scene.means.detach()[sel].double()
        w = mask[sel].double().to(means.device)
        center = (means * w[:, None]).sum(0) / w.sum()
        dist = (means - center).norm(dim=-1)
        if dist.numel() > 20:
            reach = float(torch.quantile(dist, 0.98))
        else:
            reach = float(dist.max())
        size = float(torch.exp(scene.scales.detach()[sel]).max(dim=-1).values.double().median())
        half_extent = max(reach + 2 * size, 1e-3)
        return cls(center.cpu(), framing_radius(half_extent, config.fov_y_deg), config.fov_y_deg,
                   tuple(config.elevation_range), tuple(config.radius_range), tuple(config.up), config.resolution)

    def sample(self, num: int, generator: torch.Generator) -> Cameras:
        lo, hi = self.radius_range
        return sample_orbit_cameras(
            num, self.center, radius_range=(lo * self.radius, hi * self.radius),
            elevation_range=self.elevation_range, width=self.resolution, height=self.resolution,
            fov_y_deg=self.fov_y_deg, up=self.up, generator=generator,
        )

    def ring(self, num: int, *, resolution: int | None = None, offset_deg: float = 0.0) -> Cameras:
        """`num` evenly spaced views at mid elevation and a middle distance (anchor pool, previews)."""
        res = resolution or self.resolution
        az = torch.arange(num, dtype=torch.float64) * (360.0 / num) + offset_deg
        el = torch.full((num,), sum(self.elevation_range) / 2, dtype=torch.float64)
        dist = self.radius * sum(self.radius_range) / 2
        return orbit_cameras(self.center, dist, az, el, width=res, height=res, fov_y_deg=self.fov_y_deg, up=self.up)


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
        return GaussianScene(**{n: torch.cat([getattr(self.frozen, n), self.params[n]]) for n in PARAM_NAMES})

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

    timesteps = TimestepSchedule(t_min=config.t_min, t_max=config.t_max, t_max_end=config.t_max_end)
    scale = config.effective_guidance_scale()
    if config.method == "dds":
        return DDSLoss(model, config.prompt, config.source_prompt, guidance_scale=scale, timesteps=timesteps)
    if config.method == "romap":
        return RoMaPLoss(model, config.prompt, guidance_scale=scale, timesteps=timesteps,
                         anchor_weight=config.anchor_weight)
    return SDSLoss(model, config.prompt, guidance_scale=scale, timesteps=timesteps)


def _render_with_mask(scene: GaussianScene, weights: Tensor, cameras: Cameras, config: EditConfig):
    """One render of colour + mask channel: (rgb [C,H,W,3], mask2d [C,H,W,1] detached, meta)."""
    cams = cameras.to(scene.device, scene.dtype)
    rgb = view_colors(scene.sh, scene.sh_degree, scene.means, cams.viewmats)  # [C, N, 3]
    mask_col = weights.to(rgb.dtype)[None, :, None].expand(len(cams), -1, 1)
    background = torch.tensor(tuple(config.background) + (0.0,), dtype=scene.dtype, device=scene.device)
    out = render(scene, cams, colors=torch.cat([rgb, mask_col], dim=-1), background=background,
                 backend=config.render_backend)
    return out.rgb[..., :3], out.rgb[..., 3:].detach().clamp(0.0, 1.0), out


def _render_plain(scene: GaussianScene, cameras: Cameras, config: EditConfig) -> Tensor:
    with torch.no_grad():
        return render(scene, cameras.to(scene.device, scene.dtype), background=tuple(config.background),
                      backend=config.render_backend).rgb


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
    orbit = PartOrbit.around(original, mask, config)

    work, work_mask = original, mask
    if config.prior.active(config.method):
        work, work_mask = remove_prior(original, mask, config.prior, threshold=config.mask_threshold,
                                       generator=generator)
    state = MaskedParams(work, work_mask, config.mask_threshold)
    lrs = config.lr.as_dict()
    lrs["means"] *= orbit.radius
    optimizer = make_optimizer(state.params, lrs)
    densifier = MaskedDensifier(config.densify, config.steps, state.num_trainable, scene_scale=orbit.radius)
    loss = loss_fn if loss_fn is not None else build_loss(config, guidance_model)
    needs_originals = config.method in ("dds", "romap")
    preview_cam = orbit.ring(1, resolution=config.preview_resolution, offset_deg=30.0)

    anchor_pool = orbit.ring(config.anchor_views) if config.method == "romap" else None
    anchors: Tensor | None = None
    losses: dict[str, float] = {}
    counts = {"num_cloned": 0, "num_split": 0, "num_pruned": 0}
    fallback_3d = False

    for step in range(config.steps):
        if should_stop is not None and should_stop():
            return EditResult(scene=scene, mask=mask_in, cancelled=True, steps_done=step, losses=losses)

        originals = step_anchors = None
        if anchor_pool is not None:
            if step % config.anchor_refresh == 0:
                anchors = _make_anchors(loss, state, anchor_pool, config, generator)
            pick = torch.randint(len(anchor_pool), (config.batch_size,), generator=generator)
            cameras = Cameras(anchor_pool.viewmats[pick], anchor_pool.Ks[pick], anchor_pool.width,
                              anchor_pool.height)
            step_anchors = anchors[pick.to(anchors.device)]
        else:
            cameras = orbit.sample(config.batch_size, generator)
            if needs_originals:  # the same render path as the current views: equal scenes give equal images
                with torch.no_grad():
                    originals = _render_with_mask(original, mask, cameras, config)[0]

        images, mask2d, out = _render_with_mask(state.scene(), state.all_weights(), cameras, config)
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
        _gate_and_step(state, optimizer)

        fallback_3d = _accumulate_densify_stats(densifier, state, means2d, out, cameras) or fallback_3d
        if densifier.due(step):
            refinement = densifier.refine(state.params, fallback_3d=fallback_3d, generator=generator)
            if refinement.changed:
                optimizer = _adopt_refinement(state, refinement, optimizer, lrs)
                for key in counts:
                    counts[key] += getattr(refinement, key)

        losses = {"loss": float(result.loss.detach()), **{k: float(v) for k, v in result.info.items()}}
        if on_event is not None:
            done = step + 1
            elapsed = time.perf_counter() - start
            preview = snapshot = snapshot_mask = None
            if config.preview_every and (done % config.preview_every == 0 or done == config.steps):
                preview = to_uint8(_render_plain(state.scene().detach(), preview_cam, config)[0])
                snapshot, snapshot_mask = state.assemble()
                snapshot, snapshot_mask = snapshot.to("cpu"), snapshot_mask.detach().cpu()
            on_event(EditEvent(step=done, total=config.steps, losses=losses, elapsed_s=elapsed,
                               eta_s=elapsed / done * (config.steps - done), num_gaussians=state.num_trainable,
                               preview=preview, scene=snapshot, mask=snapshot_mask))

    edited, edited_mask = state.assemble()
    return EditResult(
        scene=edited.to(scene.device), mask=edited_mask.to(mask_in.device), steps_done=config.steps,
        losses=losses, **counts,
    )


def _make_anchors(loss, state: MaskedParams, pool: Cameras, config: EditConfig,
                  generator: torch.Generator) -> Tensor:
    """RoMaP's part-edited images [P, H, W, 3] of the anchor pool, made from the *current* renders and their
    projected mask: the first ones start from the scene after prior removal (so the old look does not anchor
    the edit), later refreshes from the partly edited part (so the anchors follow the 3D edit and agree more
    across views). Outside the mask the current renders are the original's, which SLaMP keeps."""
    with torch.no_grad():
        images, mask2d, _ = _render_with_mask(state.scene().detach(), state.all_weights(), pool, config)
        return loss.make_anchors(images, mask2d, generator=generator).detach()


def _gate_and_step(state: MaskedParams, optimizer: torch.optim.Optimizer) -> None:
    """Multiply gradients by the soft mask weight, step, and scale each row's step by its weight too.

    Adam divides out any constant gradient scale, so scaling the gradient alone would let a weight of 0.6 move
    as fast as 1.0; scaling the step makes a soft weight a true per-Gaussian step size.
    """
    w = state.weights
    soft = bool((w < 1).any())
    before = {}
    for name, p in state.params.items():
        if p.grad is not None and soft:
            p.grad.mul_(w.view(-1, *([1] * (p.dim() - 1))).to(p.grad.dtype))
        if soft:
            before[name] = p.detach().clone()
    optimizer.step()
    if soft:
        with torch.no_grad():
            for name, p in state.params.items():
                wv = w.view(-1, *([1] * (p.dim() - 1))).to(p.dtype)
                p.copy_(before[name] + wv * (p - before[name]))


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
