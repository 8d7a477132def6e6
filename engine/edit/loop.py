"""One edit job: masked score distillation of the part of a scene selected by a per-Gaussian mask.

Follow one step of `iter_edit` (the body carries the same numbers):

1. pick views from the pass's pool of orbit views around the part (view_pool.py: drawn once, views that see
   too little of it redrawn once, views.py);
2. project the job's fixed **edit region** into those views (region.py): that 2D mask is the same for every
   loss (SDS's latent mask, RoMaP's anchor weight, SLaMP's mixing mask) and never follows where the masked
   Gaussians have moved;
3. render the current scene — the frozen (unmasked) Gaussians concatenated with the trainable (masked) ones;
   on the CPU the frozen rows are drawn once per view and a step redraws the part's tiles only (the same
   picture, engine/render/frozen_view.py);
   the rendered image's gradient is multiplied by the region's mask, so no pixel outside the region pushes
   anything (a latent-space mask alone does not confine the gradient: through a VAE about half of it leaks);
4. ask the guidance loss (SDS, DDS, RoMaP or a variant: engine/guidance/methods.py) for a loss on the renders,
   with the 2D mask, the original renders of the same views (DDS, DreamCatalyst, LUSD) and RoMaP's anchors;
5. backpropagate, scale each trainable Gaussian's gradient and step by its soft mask weight, take an Adam
   step, then keep the trainable Gaussians inside the region: a step that would take a centre out of the region
   is undone for that Gaussian, and scales are capped (params.py);
6. densify/prune inside the mask on schedule (engine/optimize/densify.py), dropping children born outside the
   region; report progress and, every few steps, a preview image (and, for the weight-free priors, the PSNR of
   the preview against the ideal edit).

Appearance vs shape (`EditConfig.edit`): an appearance edit keeps positions, scales, rotations and opacities
exactly as they were and optimizes colour only; a shape edit optimizes everything, densifies, and seeds the
empty space of the user's region boxes with faint Gaussians that the edit can grow into new geometry; `auto`
(the default) probes colour only for the first `shape_probe` of the steps; if the prior still pushes nearly as
hard as at the start (shape_gate.py), the edit runs again from the input with geometry after
`appearance_fraction` (the schedule auto had before): a recolour stays colour-only, a reshape/add/remove gets
its geometry and its whole schedule. An edit that stayed colour-only ends by carrying the part's learned colour
change to its poorly observed Gaussians (colour_carry.py).

The weight-free priors make the ideal edit known: `reference:SCENE` wants each view to look like SCENE's render,
and `closed-form:<colour>` is turned here into "the masked part recoloured" (engine/guidance/reference.py), so
the demo mode shows what a clean edit looks like instead of a frame flooded with one colour.

Two ways to drive it. `iter_edit` is a generator: it yields one `Progress` per step and, as its last item, the
`EditResult` (yielded, not returned, so a consumer across a process boundary, e.g. a ZeroGPU generator, gets
it like any other record). `run_edit` consumes it with an `on_event` callback and returns the result. Bad input
is refused before any work (config.py's `check_edit_inputs`), by `iter_edit` at the call, not at the first
step. Cancelling (`should_stop()` returns True, checked before every step) ends with the input unchanged.

Rows: prior-removal regrowth, region seeds and densification add and drop Gaussians, so the result's rows are
not the input's. `EditResult.row_sources` says, for each result row, the input row it descends from (-1 for
one made from nothing); the loop carries that map from its first working rows (remove_prior_rows, the seeds)
through every refinement (MaskedParams), so the user's named parts can follow the edit (engine/worker/history.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..camera import Cameras
from ..evaluate.metrics import psnr
from ..guidance.methods import method_info
from ..guidance.reference import ReferencePrior, ViewAwareModel, recolour_part
from ..optimize.adam import make_optimizer, set_position_rate
from ..optimize.densify import MaskedDensifier, accumulate_gradients
from ..optimize.memory import release_memory
from ..optimize.progress import EtaClock, Progress
from ..render.images import rgb_renderer, to_uint8
from ..scene import GaussianScene
from .config import GEOMETRY, EditConfig, check_edit_inputs
from .colour_carry import ColourExposure, carry_colour, confidence
from .params import MaskedParams, confine, drop_faint, gate_and_step, inside, scale_cap
from .prior_removal import remove_prior_rows
from .region import plan_region, seed_boxes
from .shape_gate import ShapeGate
from .view_pool import PlainRenders, ViewPool
from .views import ViewPicker


@dataclass
class EditResult:
    """The edited scene and its mask (densification adds/removes masked rows, so the mask changes with it),
    and where each of its rows came from.

    `row_sources[r]` is the input row that result row r descends from: the row itself (unmasked rows are it,
    bit-identical), or the parent of a clone or split; -1 for a Gaussian the edit created from nothing (a
    region box's seed, a prior-removal regrowth, or their children). An input row with no descendant was
    pruned. The history carries the user's named parts over the edit with it.

    When cancelled, `scene` and `mask` are the inputs, untouched (and `row_sources` is arange(N)).
    """

    scene: GaussianScene
    mask: Tensor  # [N'] float weights
    row_sources: Tensor | None = None  # [N'] int64: the input row each result row descends from, -1: new
    cancelled: bool = False
    steps_done: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    num_cloned: int = 0
    num_split: int = 0
    num_pruned: int = 0
    shape_from_step: int | None = None
    """The step from which geometry moved (0 for a shape edit); None: the edit changed colour only."""
    shape_push_ratio: float | None = None
    """auto: the prior's late/early push over the colour-only steps that decided it (engine/edit/shape_gate.py)."""


RELEASE_FROM_ROWS = 250_000  # scenes this large hand the steps' freed memory back before the result is made


def run_edit(
    scene: GaussianScene,
    mask_weights,  # [N] float weights in [0, 1] or bool
    config: EditConfig,
    guidance_model,
    *,
    on_event: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    loss_fn=None,
) -> EditResult:
    """Edit the masked part of `scene` toward `config.prompt`; see the module docstring.

    `guidance_model` is an engine.guidance model (load it with engine.guidance's loader); `loss_fn` overrides
    the loss built from `config.method` (tests inject failing or instrumented losses). `should_stop` is polled
    before every step; when it returns True the job stops and the input scene is returned unchanged. Without
    `on_event` no preview is rendered (nobody would see it).
    """
    if on_event is None:
        config = replace(config, preview_every=0)
    for record in iter_edit(scene, mask_weights, config, guidance_model, should_stop=should_stop, loss_fn=loss_fn):
        if isinstance(record, EditResult):
            return record
        if on_event is not None:
            on_event(record)
    raise RuntimeError("the edit ended without a result")  # iter_edit always yields one last


def iter_edit(
    scene: GaussianScene,
    mask_weights,  # [N] float weights in [0, 1] or bool
    config: EditConfig,
    guidance_model,
    *,
    should_stop: Callable[[], bool] | None = None,
    loss_fn=None,
) -> Iterator[Progress | EditResult]:
    """The edit as a generator: an `Progress` after every step, then the `EditResult` as the last item.

    Validates at the call (a ValueError before any work); the steps run as the caller iterates. The same
    arguments and seed give the same result as `run_edit`.
    """
    mask_in = check_edit_inputs(scene, mask_weights, config, guidance_model)
    return _edit_steps(scene, mask_in, config, guidance_model, should_stop, loss_fn)


def _edit_steps(scene: GaussianScene, mask_in: Tensor, config: EditConfig, guidance_model,
                should_stop: Callable[[], bool] | None, loss_fn) -> Iterator[Progress | EditResult]:
    """auto: a colour-only probe first; when it measures that colour cannot make the edit, the edit runs again
    from the input with geometry on its schedule (the probe's steps are the price of a shape edit; a recolour
    pays nothing and never had its geometry touched)."""
    gate = ShapeGate(config, colour_only=_is_recolour(guidance_model))
    restart = yield from _edit_pass(scene, mask_in, config, guidance_model, should_stop, loss_fn, gate, 0)
    if restart:
        yield from _edit_pass(scene, mask_in, config, guidance_model, should_stop, loss_fn,
                              ShapeGate.after_probe(config, gate), gate.decide_at)


def _edit_pass(scene: GaussianScene, mask_in: Tensor, config: EditConfig, guidance_model,
               should_stop: Callable[[], bool] | None, loss_fn, gate: ShapeGate,
               offset: int) -> Iterator[Progress | EditResult]:
    """One run of the steps from the input; returns True (ending early) when an auto probe unlocks geometry.
    `offset`: steps already spent (by the probe) for the progress records."""
    device = getattr(guidance_model, "device", scene.device)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(int(config.seed))
    original = scene.detach().to(device)
    mask = mask_in.to(device)
    selected = mask > config.mask_threshold
    region, orbit = plan_region(original, mask, config)
    fixed_renders = PlainRenders(config.render_backend)  # the original's and a reference's views, drawn once
    model = edit_prior(guidance_model, original, selected, config, fixed_renders)
    view_aware = isinstance(model, ViewAwareModel)
    picker = ViewPicker(orbit, original, selected, config.min_visible_fraction, config.render_backend)

    # the rows the loop starts from, and the input row each one is (-1: made from nothing)
    work, work_mask, work_sources = original, mask, torch.arange(len(original), device=device)
    if config.prior.active(config.method):
        work, work_mask, work_sources = remove_prior_rows(original, mask, config.prior,
                                                          threshold=config.mask_threshold, generator=generator)
    seeds = seed_boxes(region, work, config)
    if seeds is not None:
        work = GaussianScene.concat([work, seeds])
        work_mask = torch.cat([work_mask, torch.ones(len(seeds), dtype=work_mask.dtype, device=work_mask.device)])
        work_sources = torch.cat([work_sources, work_sources.new_full((len(seeds),), -1)])
    state = MaskedParams(work, work_mask, config.mask_threshold, sources=work_sources)
    pool = ViewPool(picker, config.view_pool, generator, region, state.base, state.frozen_rows, config.render_backend,
                    device)
    refresh_every = config.view_refresh or max(1, min(8, round(state.num_frozen / 150_000)))
    max_log_scale = scale_cap(original, selected, region, seeds, config)
    lrs = config.lr.as_dict()
    lrs["means"] *= orbit.radius
    optimizer = make_optimizer(state.params, lrs)
    densifier = MaskedDensifier(config.densify, config.steps, state.num_trainable, scene_scale=orbit.radius)
    loss = loss_fn if loss_fn is not None else build_loss(config, model)
    needs_originals = method_info(config.method).needs_originals  # dds, dreamcatalyst, lusd
    preview_cam = orbit.ring(1, resolution=config.preview_resolution, offset_deg=30.0)
    preview_mask = region.project(preview_cam, device=device, backend=config.render_backend) if view_aware else None
    preview_ideal = None  # the ideal preview image of a view-aware prior (made at the first preview)

    anchors = anchor_pool = anchor_masks = None  # RoMaP: cameras of the pool's views that carry anchors
    losses: dict[str, float] = {}
    counts = {"num_cloned": 0, "num_split": 0, "num_pruned": 0}
    fallback_3d = False
    exposure = ColourExposure(state.num_trainable, device)

    clock = EtaClock()
    for step in range(config.steps):
        if should_stop is not None and should_stop():
            yield EditResult(scene=scene, mask=mask_in, row_sources=torch.arange(len(scene), device=scene.device),
                             cancelled=True, steps_done=offset + step, losses=losses)
            return
        shape = gate.unlocked(step)
        if shape and gate.probing:
            return True

        if step and step % refresh_every == 0:
            pool.refresh(generator)
        # 1. views of the part (RoMaP: from its anchor pool, redrawn with fresh anchors every anchor_refresh steps)
        # 2. and the fixed region's 2D mask in each of them
        originals = step_anchors = None
        if config.method == "romap":
            if step % config.anchor_refresh == 0:
                background = _draw_background(config, generator)  # one per pool: the anchors are drawn on it
                anchor_pool = pool.cameras[pool.draw(config.anchor_views, generator, distinct=True)]
                anchor_masks = pool.masks(anchor_pool)
                anchors = _make_anchors(loss, model, state, pool, anchor_pool, anchor_masks, config, step,
                                        generator, background)
            pick = torch.randint(len(anchor_pool), (config.batch_size,), generator=generator)
            cameras = anchor_pool[pick]
            mask2d = anchor_masks[pick.to(anchor_masks.device)]
            step_anchors = anchors[pick.to(anchors.device)]
        else:
            background = _draw_background(config, generator)
            cameras = pool.cameras[pool.draw(config.batch_size, generator)]
            mask2d = pool.masks(cameras)
        _tell_views(model, cameras, background)
        if needs_originals:  # the same render path as the current views: equal scenes give equal images
            originals = fixed_renders(original, cameras.to(device, original.dtype), background)

        # 3. render frozen + trainable rows (only the part's tiles are redrawn: the full render's picture);
        # the image gradient is confined to the region
        out, num_frozen = pool.render(state.params, cameras, background)
        images = out.rgb.clamp(0.0, 1.0)  # what a VAE may see (SH colours are only clamped at 0)
        image_grad: dict[str, Tensor] = {}
        if images.requires_grad:
            images.register_hook(lambda grad, m=mask2d: confine(grad, m, image_grad))
        means2d = out.meta.get("means2d")
        if isinstance(means2d, Tensor) and means2d.requires_grad:
            means2d.retain_grad()

        # 4. the guidance loss on the renders
        result = loss(images, step=step, total_steps=config.steps, mask2d=mask2d, originals=originals,
                      anchors=step_anchors, generator=generator)
        if not torch.isfinite(result.loss):
            raise FloatingPointError(f"the edit loss became {float(result.loss)} at step {step + 1}; "
                                     "lower the learning rates or the guidance scale")

        # 5. backward; the masked, weighted Adam step that keeps the rows inside the region
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        set_position_rate(optimizer, lrs["means"], config.lr.means_final_fraction, step, config.steps)
        if not shape:
            for name in GEOMETRY:
                state.params[name].grad = None
            exposure.add(state.params["sh0"].grad)
        gate_and_step(state, optimizer, region, max_log_scale)

        # 6. densify / prune inside the region on schedule; report progress (and a preview every few steps)
        if shape:
            fallback_3d = accumulate_gradients(densifier, state.params, means2d, out.meta, cameras,
                                               skip=num_frozen) or fallback_3d
            if densifier.due(step):
                refinement = inside(densifier.refine(state.params, fallback_3d=fallback_3d, generator=generator,
                                                     prunable=state.prunable()), region)
                densifier.reset(refinement.parent.numel(), densifier.grad_sum.device)  # rows after the region filter
                if refinement.changed:
                    optimizer = state.adopt(refinement, optimizer, lrs)
                    for key in counts:
                        counts[key] += getattr(refinement, key)

        losses = {"loss": float(result.loss.detach()), **{k: float(v) for k, v in result.info.items()},
                  **_term_gradient_norms(image_grad.get("grad"), images, step_anchors, mask2d, loss)}
        if not shape:
            gate.observe(losses.get("grad_distill", losses.get("grad_image")))
        done = step + 1
        elapsed = time.perf_counter() - start
        preview = snapshot = snapshot_mask = None
        if config.preview_every and (done % config.preview_every == 0 or done == config.steps):
            with torch.no_grad():
                rendered = pool.render({n: t.detach() for n, t in state.params.items()}, preview_cam,
                                       config.background)[0].rgb
            if view_aware and preview_ideal is None:
                _tell_views(model, preview_cam, tuple(config.background))
                preview_ideal = model.target_images(preview_cam)
            preview = to_uint8(rendered[0])
            if preview_ideal is not None:
                score = psnr(rendered, preview_ideal.to(rendered.device), preview_mask)
                if score is not None:  # None: the part is not in the preview's view, nothing to measure
                    losses["psnr_ideal"] = score
            snapshot, snapshot_mask = state.assemble()
            snapshot, snapshot_mask = snapshot.to("cpu"), snapshot_mask.detach().cpu()
        yield Progress(step=offset + done, total=offset + config.steps, losses=losses, elapsed_s=elapsed,
                        eta_s=clock.tick(config.steps - done), num_gaussians=state.num_trainable,
                        preview=preview, scene=snapshot, mask=snapshot_mask)

    # what only the steps needed (the pool's frozen views: up to 512 MB; the prior's recoloured reference) and the
    # steps' freed render buffers (~0.3x the scene at 3M Gaussians) go before the result, a scene-sized copy, is made
    del pool, picker, model, loss, fixed_renders
    if state.num_start >= RELEASE_FROM_ROWS:  # a collection costs ~0.2 s: worth it only where the pages are many
        release_memory()
    if gate.unlocked_at is None:  # colour only: the region boxes' unused seeds go, the change reaches every row
        made = state.origin < 0
        if bool(made.any()):
            exposure.total = exposure.total[~made]
            state.keep_rows(~made)
        if config.colour_carry:
            _carry(state, original, work, exposure, config.carry_share)
    else:
        counts["num_pruned"] += drop_faint(state, config)
    row_sources = state.row_sources().to(scene.device)  # before the result: its temporaries are not beside it
    edited, edited_mask = state.assemble()
    yield EditResult(scene=edited.to(scene.device), mask=edited_mask.to(mask_in.device),
                     row_sources=row_sources, steps_done=offset + config.steps, losses=losses,
                     shape_from_step=gate.unlocked_at, shape_push_ratio=gate.ratio, **counts)


def _is_recolour(model) -> bool:
    """A constant-colour closed-form prior: "the part becomes this colour" (see `edit_prior`)."""
    from ..guidance.closed_form import ClosedFormPrior

    return isinstance(model, ClosedFormPrior) and model.target.dim() == 1


def _carry(state: MaskedParams, original: GaussianScene, work: GaussianScene, exposure: ColourExposure,
           share: float) -> None:
    """Colour-only edit: move each poorly observed masked row toward the colour its well observed neighbours
    imply (colour_carry.py): the colour map from the input's colours (RoMaP's prior removal reset them to
    grey), the higher bands' change from where the edit started them (`work`)."""
    rows = state.sources
    if bool((rows < 0).any()) or exposure.total.shape[0] != state.num_trainable:
        return
    params = state.params
    with torch.no_grad():
        sh0, shN = carry_colour(params["means"].detach(), original.sh0[rows], params["sh0"].detach(),
                                work.shN[state.origin], params["shN"].detach(), confidence(exposure.total, share))
        params["sh0"].copy_(sh0.to(params["sh0"].dtype))
        params["shN"].copy_(shN.to(params["shN"].dtype))


def build_loss(config: EditConfig, model):
    """The guidance loss object (engine.guidance.methods) for `config.method`, with the config's timesteps and
    scale, each None resolved for the model's family (the family comes with the model's class, which the loader
    picks from its config)."""
    from ..guidance.methods import build_loss as build_method_loss
    from ..guidance.methods import family_of, make_schedule

    run = config.resolved(family_of(model))  # the method's defaults for this model's family where None
    timesteps = make_schedule(run.schedule, run.t_min, run.t_max, max(run.t_max_end, run.t_min))
    return build_method_loss(config.method, model, prompt=config.prompt, source_prompt=config.source_prompt,
                             guidance_scale=run.guidance_scale, timesteps=timesteps,
                             anchor_weight=config.anchor_weight)


def edit_prior(model, original: GaussianScene, selected: Tensor, config: EditConfig, render_fn=None):
    """The model the edit distils from. A constant-colour closed-form prior means "the part becomes this
    colour": it becomes a reference prior on the original with the selected Gaussians recoloured, so its ideal
    edit changes nothing outside the part. A reference prior is put on the edit's background, and given the
    edit's renderer (`render_fn`, by default `rgb_renderer`) if it has none (guidance/ cannot draw a scene itself)."""
    from ..guidance.closed_form import ClosedFormPrior

    render_fn = rgb_renderer(config.render_backend) if render_fn is None else render_fn
    if isinstance(model, ClosedFormPrior) and model.target.dim() == 1:
        colour = tuple(float(c) for c in model.target.clamp(0, 1).cpu())
        return ReferencePrior(recolour_part(original.to("cpu"), selected.cpu(), colour),
                              background=tuple(config.background), data_std=model.data_std,
                              render_fn=render_fn, name=model.name)
    if isinstance(model, ReferencePrior):
        return model.with_background(tuple(config.background)).with_renderer(render_fn)
    return model


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


def _make_anchors(loss, model, state: MaskedParams, views: ViewPool, pool: Cameras, masks: Tensor,
                  config: EditConfig, step: int, generator: torch.Generator, background) -> Tensor:
    """RoMaP's part-edited images [P, H, W, 3] of a freshly drawn pool of views, made from the *current*
    renders and the region's projected mask. The first ones start from the scene after prior removal (so the
    old look does not anchor the edit); later refreshes start from the partly edited part at a lower SLaMP
    strength (t_start falls linearly to half its value by the last step), so they refine what the 3D edit
    already agrees on instead of re-inventing the part independently in every view."""
    _tell_views(model, pool, background)
    slamp = getattr(loss, "slamp", None)
    if slamp is not None and step > 0:
        strength = slamp.t_start * (1.0 - 0.5 * step / max(config.steps, 1))
        loss.slamp = replace(slamp, t_start=max(strength, slamp.t_stop))
    try:
        with torch.no_grad():
            images = views.render({n: t.detach() for n, t in state.params.items()}, pool, background)[0].rgb
            return loss.make_anchors(images, masks, generator=generator).detach()
    finally:
        if slamp is not None:
            loss.slamp = slamp
