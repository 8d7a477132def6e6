"""The edit's parameters and the rules every optimizer step obeys.

Why Gaussians outside the mask stay bit-identical: they are never optimizer parameters. `MaskedParams` reads
them from the scene the edit started from, by index (no copy: at 3M Gaussians a copy is ~700 MB), and only the
masked rows are leaf tensors; the result is assembled from that scene's rows.

The step rules, in the order the loop applies them:

- `confine`: the rendered image's gradient is multiplied by the region's 2D mask (an image hook), so no pixel
  outside the region pushes anything;
- `gate_and_step`: each row's gradient and step are scaled by its soft mask weight, Adam steps, a row whose
  centre left the region takes back its old centre, and log-scales are capped (`scale_cap`);
- `inside`: densification children born outside the region are pruned, never adopted (`MaskedParams.adopt`);
- `drop_faint`: at the end, rows the edit made transparent or never grew are removed.

Only what the edit made or faded may go: a faint Gaussian of the user's capture (real captures hold many) is
kept by the prune and by `drop_faint` alike unless the edit itself halved its opacity (`MaskedParams.prunable`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..optimize.adam import adopt_rows
from ..optimize.densify import Refinement
from ..scene import PARAM_NAMES, GaussianScene
from .region import EditRegion

_ROWS_PER_COPY = 1 << 18  # frozen rows copied into the result per slice: a bounded temporary at any size

if TYPE_CHECKING:
    from .config import EditConfig


class MaskedParams:
    """The masked Gaussians as leaf tensors; the unmasked ("frozen") ones are the rows `frozen_rows` of `base`,
    the scene the edit started from, read in place and never written (scenes are values others may hold).

    Each trainable row remembers `origin`, its row in the scene the edit started from (-1 for rows added by
    densification), so `assemble()` puts every row back where it was and appends the new ones. Every row also
    carries its *source*: the row of the user's input scene it descends from (`sources` [N] maps the rows of
    `scene` there, -1 for Gaussians the edit made from nothing; by default they are the same rows). A clone or
    split child inherits its parent's source, so `row_sources()` tells the caller where each result row came
    from (the history carries named parts over an edit with it).
    """

    def __init__(self, scene: GaussianScene, mask: Tensor, threshold: float, sources: Tensor | None = None) -> None:
        selected = mask > threshold
        index = torch.arange(len(scene), device=scene.device)
        sources = index if sources is None else sources.to(scene.device)
        if sources.shape != (len(scene),):
            raise ValueError(f"sources must have one entry per row ({len(scene)}), got {tuple(sources.shape)}")
        self.num_start = len(scene)
        self.base = scene.detach()
        self.base_weights, self.base_sources = mask, sources  # [N] each, read by index like `base`'s rows
        self.frozen_rows = ~selected  # [N] bool
        self.frozen_index = index[~selected]  # [F]
        trainable = scene.subset(selected)
        self.params: dict[str, Tensor] = {n: t.detach().clone().requires_grad_(True) for n, t in trainable.items()}
        self.weights = mask[selected].clone()  # [M]
        self.origin = index[selected]  # [M]
        self.sources = sources[selected]  # [M]
        self.start_opacity = torch.sigmoid(trainable.opacities.detach())  # [M] each row's opacity at the start

    @property
    def num_trainable(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_frozen(self) -> int:
        return int(self.frozen_index.shape[0])

    def scene(self) -> GaussianScene:
        """Frozen rows first, then trainable rows: differentiable w.r.t. the trainable leaves (a whole-scene
        copy: for tests and small scenes; the loop renders through the view pool instead)."""
        return GaussianScene.trusted(**{n: torch.cat([getattr(self.base, n)[self.frozen_index], self.params[n]])
                                        for n in PARAM_NAMES})

    def all_weights(self) -> Tensor:  # [F + M], in `scene()` order
        return torch.cat([self.base_weights[self.frozen_index], self.weights])

    def replace_rows(self, params: dict[str, Tensor], parent: Tensor, appended: Tensor) -> None:
        """Adopt a densification result: new leaves; weights, origins and sources follow each row's parent."""
        self.params = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
        self.weights = self.weights[parent]
        self.origin = torch.where(appended, torch.full_like(parent, -1), self.origin[parent])
        self.sources = self.sources[parent]
        self.start_opacity = self.start_opacity[parent]

    def keep_rows(self, keep: Tensor) -> None:  # [M] bool
        """Drop the trainable rows where `keep` is False (their bookkeeping with them)."""
        self.params = {n: t.detach()[keep].clone().requires_grad_(True) for n, t in self.params.items()}
        self.weights, self.origin, self.sources = self.weights[keep], self.origin[keep], self.sources[keep]
        self.start_opacity = self.start_opacity[keep]

    def prunable(self) -> Tensor:  # [M] bool
        """Rows the edit may delete when faint: those it added, and input rows whose opacity it at least
        halved (it faded them: a removal). An input Gaussian that was faint to begin with is not the edit's."""
        opacity = torch.sigmoid(self.params["opacities"].detach())
        return (self.origin < 0) | (opacity < 0.5 * self.start_opacity.to(opacity.device))

    def assemble(self) -> tuple[GaussianScene, Tensor]:
        """The edited scene and mask: rows at their original positions (pruned ones gone), new rows last.

        Memory (the result is the one scene-sized allocation of the edit's end): when every input row is still
        in its place, each parameter is `base`'s with the part's rows written over it, or `base`'s tensor itself
        when the edit changed none of its bits (the geometry of a colour-only edit; scenes are immutable values,
        so sharing it is safe). Otherwise each parameter's frozen rows are copied from `base` a bounded slice at
        a time, and its trainable rows written to their places."""
        with torch.no_grad():
            if self._rows_in_place():
                scene = GaussianScene(**{n: self._over_base(getattr(self.base, n), self.params[n])
                                         for n in PARAM_NAMES})
                weights = self.base_weights.clone()
                weights[self.origin] = self.weights
                return scene, weights
            order = self._order()
            place = torch.empty_like(order)
            place[order] = torch.arange(len(order), device=order.device)  # row i of scene() goes to place[i]
            F = self.num_frozen
            out = {}
            for name in PARAM_NAMES:
                base = getattr(self.base, name)
                rows = base.new_empty((len(order),) + tuple(base.shape[1:]))
                for start in range(0, F, _ROWS_PER_COPY):
                    part = slice(start, start + _ROWS_PER_COPY)
                    rows[place[:F][part]] = base[self.frozen_index[part]]
                rows[place[F:]] = self.params[name].detach().to(base.dtype)
                out[name] = rows
            return GaussianScene(**out), self.all_weights()[order]

    def row_sources(self) -> Tensor:  # [N'] int64, in `assemble()` order
        """For each row of `assemble()`'s scene, the input row it descends from (-1: made from nothing)."""
        if self._rows_in_place():
            out = self.base_sources.clone()
            out[self.origin] = self.sources
            return out
        return torch.cat([self.base_sources[self.frozen_index], self.sources])[self._order()]

    def _rows_in_place(self) -> bool:
        """No row added or removed: the result's rows are `base`'s, in its order (trainable ones rewritten)."""
        return self.num_frozen + self.num_trainable == self.num_start and bool((self.origin >= 0).all())

    def _over_base(self, base: Tensor, rows: Tensor) -> Tensor:  # base [N, ...], rows [M, ...]
        """`base` with the trainable rows written at their origins; `base` itself when that changes no bit."""
        rows = rows.detach().to(base.dtype)
        if _same_bits(rows, base[self.origin]):
            return base
        out = base.clone()
        out[self.origin] = rows
        return out

    def _order(self) -> Tensor:  # [F + M]
        """The permutation of `scene()`'s rows (frozen, then trainable) into the result's row order."""
        new = self.origin < 0
        key = torch.cat([self.frozen_index, self.origin])
        key[len(self.frozen_index):][new] = self.num_start + torch.arange(int(new.sum()), device=key.device)
        return torch.argsort(key)

    def adopt(self, refinement: Refinement, optimizer: torch.optim.Optimizer,
              lrs: dict[str, float]) -> torch.optim.Optimizer:
        """Swap in a densification's rows; returns a new optimizer that carries the surviving rows' moments."""
        old_params = self.params
        self.replace_rows(refinement.params, refinement.parent, refinement.appended)
        return adopt_rows(optimizer, old_params, self.params, refinement.parent, refinement.reset_state, lrs)


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether a and b hold the same bits (-0.0 is not 0.0): only then may the result be the input's tensor."""
    bits = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
            torch.float64: torch.int64}.get(a.dtype)
    return (bits is not None and a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.contiguous().view(bits), b.contiguous().view(bits)))


def scale_cap(original: GaussianScene, selected: Tensor, region: EditRegion, seeds: GaussianScene | None,
              config: EditConfig) -> float:
    """The largest log-scale a trainable row may take: `max_scale_growth` x the selection's 98th-percentile
    size (a part that grows is covered by splits, not by a few discs blown up), at least the seeds' size."""
    sizes = torch.exp(original.scales.detach()[selected]).amax(dim=-1)
    cap = math.log(max(config.max_scale_growth * float(torch.quantile(sizes.float(), 0.98)),
                       1e-6)) if sizes.numel() else math.log(region.cell)
    if seeds is not None:
        cap = max(cap, float(seeds.scales.max()))
    return cap


def confine(grad: Tensor, mask2d: Tensor, keep: dict) -> Tensor:
    """Image-gradient hook: remember the gradient (for the per-term norms), pass on its part inside the region."""
    keep["grad"] = grad.detach()
    return grad * mask2d.to(grad.dtype)


def gate_and_step(state: MaskedParams, optimizer: torch.optim.Optimizer, region: EditRegion | None = None,
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


def inside(refinement: Refinement, region: EditRegion) -> Refinement:
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


def drop_faint(state: MaskedParams, config: EditConfig, faded: float = 0.01) -> int:
    """At the end, remove what the edit made transparent or never grew: rows it added (seeds, clones) whose
    opacity stayed below `seed_opacity` (they did not earn their place; left in, they are haze), and
    original masked rows the edit faded below `faded` (a removal the last refinement did not reach; an input
    Gaussian that was that faint before the edit stays, see `MaskedParams.prunable`). Frozen rows are never
    touched. At least one trainable row is kept."""
    opacity = torch.sigmoid(state.params["opacities"].detach())
    new = state.origin < 0
    faint = (new & (opacity < config.seed_opacity)) | (~new & (opacity < faded) & state.prunable())
    if not bool(faint.any()) or bool(faint.all()):
        return 0
    state.keep_rows(~faint)
    return int(faint.sum())
