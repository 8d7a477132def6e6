"""Densify and prune the trainable Gaussians (an edit's masked subset, or a whole generated scene).

The same rules as gsplat's `DefaultStrategy`, applied to the rows a loop optimizes (an edit's masked subset;
every row of a generation):

- after every backward, `accumulate()` adds each trainable Gaussian's screen-space positional gradient norm
  (normalized to NDC units and by the batch size, as gsplat does) and counts the views it was visible in;
- every `interval` steps between `start_step` and `stop_step`, `refine()` looks at the average gradient:
  above `grad_threshold` (and among the top `grow_fraction`), small Gaussians (largest axis <= `scale_threshold`
  x scene scale) are *cloned* (a copy appended at the same place: the two then drift apart) and large ones are
  *split* (two children sampled inside the parent, each `split_factor` times smaller); then Gaussians with
  opacity below `prune_opacity` are removed — among the rows the caller allows (`prunable`): an edit lets go
  only of rows it added or faded itself, never of a faint Gaussian of the user's capture.

Because only the trainable subset is passed in, Gaussians outside an edit's mask can never be cloned, split or
pruned. New rows inherit their parent's mask weight (the caller gathers weights with `Refinement.parent`).

Gradient source (`accumulate_gradients`, what both loops call after backward): the renderer's
`meta["means2d"]` ([C, N, 2] pixels) when the backend keeps it in the autograd graph (the loops call
`retain_grad()` on it). When a backend's means2d carries no gradient, it falls back to `accumulate_3d()` with
the norm of d loss / d means (world units) and the separate `grad_threshold_3d`; the rules are otherwise
identical. After a refinement, engine/optimize/adam.py's `adopt_rows` carries the optimizer over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..render.projection import quat_to_rotmat


@dataclass
class DensifyConfig:
    """When and how an edit grows and prunes Gaussians inside the mask."""

    enabled: bool = True
    """Densify and prune at all (off: the masked Gaussians only move)."""
    start_step: int = 100
    """First step at which a refinement may happen (gradients are accumulated from step 0)."""
    stop_fraction: float = 0.8
    """No refinement after this fraction of the edit's steps (the last steps settle the new Gaussians)."""
    interval: int = 50
    """Steps between refinements; the gradient statistics are reset after each one."""
    grad_threshold: float = 0.0002
    """Average screen-space gradient norm (NDC units, gsplat's `grow_grad2d`) above which a Gaussian grows."""
    grad_threshold_3d: float = 0.0002
    """The same threshold for the fallback statistic (norm of d loss / d means) when means2d has no grad."""
    grow_fraction: float = 0.1
    """At most this fraction of the trainable Gaussians (those with the largest gradients) grows per refinement.
    Distillation gradients are not on the scale of a photometric loss (they depend on the model, the guidance
    scale and the resolution), so the absolute threshold alone could grow almost every Gaussian at once."""
    scale_threshold: float = 0.01
    """Largest axis <= this x scene scale: clone; larger: split (gsplat's `grow_scale3d`)."""
    split_factor: float = 1.6
    """A split child's scales are the parent's divided by this."""
    prune_opacity: float = 0.005
    """Gaussians whose opacity falls below this are removed."""
    max_growth: float = 4.0
    """The trainable set never grows beyond this multiple of its size at the start of the edit."""


@dataclass
class Refinement:
    """The outcome of one refinement over M old rows -> M' new rows.

    New row i takes its mask weight and bookkeeping from old row `parent[i]`. `appended[i]` marks rows that
    did not exist before (clones and second split children): they have no original index in the scene.
    `reset_state[i]` marks rows whose optimizer moments must start from zero (every new or split row).
    """

    params: dict[str, Tensor]  # each [M', ...], plain tensors (not leaves of any graph)
    parent: Tensor  # [M'] long
    appended: Tensor  # [M'] bool
    reset_state: Tensor  # [M'] bool
    num_cloned: int = 0
    num_split: int = 0
    num_pruned: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.num_cloned or self.num_split or self.num_pruned)


@dataclass
class MaskedDensifier:
    """Gradient statistics and refinement for the trainable (masked) rows of one edit job."""

    config: DensifyConfig
    total_steps: int
    initial_count: int
    scene_scale: float
    grad_sum: Tensor = field(init=False)  # [M]
    count: Tensor = field(init=False)  # [M]

    def __post_init__(self) -> None:
        self.reset(self.initial_count)

    def reset(self, num: int, device: torch.device | str = "cpu") -> None:
        self.grad_sum = torch.zeros(num, dtype=torch.float64, device=device)
        self.count = torch.zeros(num, dtype=torch.float64, device=device)

    # ------------------------------------------------------------------ statistics (after each backward)
    def accumulate(
        self,
        means2d_grad: Tensor,  # [C, M, 2] d loss / d pixel position of the trainable rows
        visible: Tensor,  # [C, M] bool, the rows the renderer did not cull
        width: int,
        height: int,
    ) -> None:
        """Add screen-space gradient norms, normalized as gsplat does (NDC units, x batch size)."""
        num_cams = means2d_grad.shape[0]
        scale = torch.tensor([width / 2.0 * num_cams, height / 2.0 * num_cams], dtype=means2d_grad.dtype,
                             device=means2d_grad.device)
        norms = (means2d_grad.detach() * scale).norm(dim=-1).double()  # [C, M]
        vis = visible.to(norms.dtype)
        self.grad_sum += (norms * vis).sum(dim=0).to(self.grad_sum.device)
        self.count += vis.sum(dim=0).to(self.count.device)

    def accumulate_3d(self, means_grad: Tensor) -> None:  # [M, 3]
        """Fallback statistic when the renderer's means2d has no gradient: |d loss / d means| per row."""
        norms = means_grad.detach().norm(dim=-1).double()
        self.grad_sum += norms.to(self.grad_sum.device)
        self.count += (norms > 0).double().to(self.count.device)

    # ------------------------------------------------------------------ refinement
    def due(self, step: int) -> bool:
        """Whether a refinement should run after optimizer step `step` (0-based)."""
        cfg = self.config
        done = step + 1
        stop = int(cfg.stop_fraction * self.total_steps)
        return cfg.enabled and cfg.interval > 0 and cfg.start_step <= done <= stop and done % cfg.interval == 0

    def refine(self, params: dict[str, Tensor], *, fallback_3d: bool, generator: torch.Generator,
               prunable: Tensor | None = None) -> Refinement:
        """Clone / split / prune the rows in `params` (the trainable subset); resets the statistics.
        `prunable` ([M] bool, default all): the rows that may be pruned when faint (children follow their
        parent; clones and second split children are always prunable: the refinement made them)."""
        cfg = self.config
        with torch.no_grad():
            p = {name: t.detach() for name, t in params.items()}
            num = p["means"].shape[0]
            device = p["means"].device
            avg = (self.grad_sum / self.count.clamp_min(1.0)).to(device)
            threshold = cfg.grad_threshold_3d if fallback_3d else cfg.grad_threshold
            high = avg > threshold
            if cfg.grow_fraction < 1.0 and num:
                cutoff = torch.quantile(avg.float(), 1.0 - max(cfg.grow_fraction, 0.0))
                high &= avg > cutoff.to(avg.dtype)
            small = torch.exp(p["scales"]).max(dim=-1).values <= cfg.scale_threshold * self.scene_scale
            budget = max(0, int(cfg.max_growth * self.initial_count) - num)
            clone_idx = (high & small).nonzero().flatten()
            split_idx = (high & ~small).nonzero().flatten()
            # Both add one row each; over budget, keep the rows with the largest gradient.
            if clone_idx.numel() + split_idx.numel() > budget:
                grow_idx = torch.cat([clone_idx, split_idx])
                keep = torch.argsort(avg[grow_idx], descending=True, stable=True)[:budget]
                chosen = torch.zeros(num, dtype=torch.bool, device=device)
                chosen[grow_idx[keep]] = True
                clone_idx = (chosen & small).nonzero().flatten()
                split_idx = (chosen & ~small).nonzero().flatten()

            # Split: the parent row becomes child 1 in place, child 2 is appended.
            new_rows = {name: t.clone() for name, t in p.items()}
            child2 = {name: t[split_idx].clone() for name, t in p.items()}
            if split_idx.numel():
                scales = torch.exp(p["scales"][split_idx])  # [S, 3]
                rot = quat_to_rotmat(p["quats"][split_idx])  # [S, 3, 3]
                noise = torch.randn((2, split_idx.numel(), 3), generator=generator, dtype=scales.dtype)
                offsets = torch.einsum("sij,bsj->bsi", rot, scales[None] * noise.to(device))  # [2, S, 3]
                shrink = math.log(cfg.split_factor)
                new_rows["means"][split_idx] = p["means"][split_idx] + offsets[0]
                new_rows["scales"][split_idx] = p["scales"][split_idx] - shrink
                child2["means"] = p["means"][split_idx] + offsets[1]
                child2["scales"] = p["scales"][split_idx] - shrink
            clones = {name: t[clone_idx].clone() for name, t in p.items()}

            out = {name: torch.cat([new_rows[name], clones[name], child2[name]]) for name in p}
            parent = torch.cat([torch.arange(num, device=device), clone_idx, split_idx])
            appended = torch.cat([
                torch.zeros(num, dtype=torch.bool, device=device),
                torch.ones(clone_idx.numel() + split_idx.numel(), dtype=torch.bool, device=device),
            ])
            reset = appended.clone()
            reset[split_idx] = True

            # Prune, but never the whole set (an edit with nothing left to optimize is not an edit).
            low = torch.sigmoid(out["opacities"]) < cfg.prune_opacity
            if prunable is not None:
                low &= prunable.to(device)[parent] | appended
            if bool(low.all()):
                low = torch.zeros_like(low)
            keep = ~low
            out = {name: t[keep] for name, t in out.items()}
            result = Refinement(
                params=out,
                parent=parent[keep],
                appended=appended[keep],
                reset_state=reset[keep],
                num_cloned=int(clone_idx.numel()),
                num_split=int(split_idx.numel()),
                num_pruned=int(low.sum()),
            )
        self.reset(result.parent.numel(), self.grad_sum.device)
        return result



def accumulate_gradients(
    densifier: MaskedDensifier,
    params: dict[str, Tensor],  # the trainable rows, each [M, ...]
    means2d,  # the render's meta["means2d"] [C, F + M, 2] (its .grad after backward), or None
    meta: dict,  # the render's meta (for "radii")
    cameras,  # the rendered Cameras (their width and height normalize the gradient)
    *,
    skip: int = 0,  # F: leading rendered rows that are not trainable (an edit's frozen Gaussians)
) -> bool:
    """Feed this step's positional gradients of the trainable rows to the densifier; True when it had to use
    the 3D fallback statistic (the renderer's means2d carried no gradient)."""
    if not densifier.config.enabled:
        return False
    radii = meta.get("radii")
    if isinstance(means2d, Tensor) and means2d.grad is not None and isinstance(radii, Tensor):
        grad = means2d.grad[:, skip:]
        visible = (radii[:, skip:] > 0).all(dim=-1) if radii.dim() == 3 else radii[:, skip:] > 0
        densifier.accumulate(grad, visible, cameras.width, cameras.height)
        return False
    if params["means"].grad is not None:
        densifier.accumulate_3d(params["means"].grad)
        return True
    return False
