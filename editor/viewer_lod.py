"""Which Gaussians the browser's splat view gets: a level of detail it can draw.

Why: a real capture holds millions of Gaussians; Viser sends 32 bytes per splat and sorts and shades every one
in the browser (in software WebGL, 40-50 s a frame at 1.2M, freezing the page that Gradio shares). The view
gets a budget of splats instead, drawn from the scene by importance, and the selection always at full detail.
Server renders (the Render tab, previews, the view's "Server render") always use the whole scene.

How: one *detail order* per scene, a weighted sample without replacement (Efraimidis-Spirakis: row i gets the
key log(u_i) / w_i and rows are taken by descending key), with w_i = opacity x largest cross-section of the
Gaussian (what it can cover on screen) and u_i a hash of the row index — deterministic, and stable across
scenes that keep their rows (a mask change, an edit of a part) so the view does not shimmer. Any budget is a
prefix of that order, so coarse-then-fine refinement never reshuffles. Transparent rows (hidden parts, pruned
opacity) are left out: Viser would draw them with opacity 0 anyway.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.scene import GaussianScene

DEFAULT_SPLAT_BUDGET = 300_000  # the most splats a browser gets without "Full detail", however fast it draws
FIRST_SPLATS = 8_000  # the first chunk: software WebGL on 2 busy cores draws it in ~1-2 s (20k: ~4 s, 60k: ~10 s)
CHUNK_GROWTH = 1.5  # each further chunk holds half as many rows as the chunks before it together
FULL_DETAIL_WEIGHT = 0.5  # rows of the mask at or above this weight (the default selection threshold) are all sent
MIN_OPACITY = 0.5 / 255  # below this Viser's 8-bit opacity is 0: the row would be sent for nothing


def splat_importance(scene: GaussianScene) -> Tensor:  # [N] float64, >= 0
    """Opacity x largest cross-section area (product of the two largest standard deviations): a flat disc
    covers as much screen as a ball of its radius, a needle little. Zero for rows too transparent to draw."""
    with torch.no_grad():
        log_scales = scene.scales.detach().to("cpu", torch.float64)
        area = torch.exp(log_scales.sum(dim=1) - log_scales.min(dim=1).values)
        opacity = torch.sigmoid(scene.opacities.detach().to("cpu", torch.float64))
        return torch.where(opacity >= MIN_OPACITY, opacity * area, torch.zeros_like(area))


def row_uniforms(count: int) -> np.ndarray:  # [count] float64 in (0, 1)
    """A fixed uniform number per row index (splitmix64 of the index): the same row always draws the same."""
    with np.errstate(over="ignore"):
        z = np.arange(count, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def detail_order(importance: Tensor) -> Tensor:  # importance [N] >= 0 -> [M] int64 rows, M <= N
    """Rows with importance > 0, most important first in the sense of a weighted sample without replacement:
    a prefix of length k is a sample of k rows drawn with probability proportional to importance."""
    weights = importance.detach().to("cpu", torch.float64).numpy()
    if weights.ndim != 1:
        raise ValueError(f"importance must be one weight per row [N], got shape {tuple(weights.shape)}")
    drawable = np.flatnonzero(weights > 0)
    keys = np.log(row_uniforms(len(weights))[drawable]) / weights[drawable]  # all < 0; nearer 0 = drawn earlier
    return torch.from_numpy(drawable[np.argsort(-keys, kind="stable")].astype(np.int64))


def choose_rows(order: Tensor, budget: int | None, count: int, mask: Tensor | None = None,
                drawable: Tensor | None = None) -> Tensor:  # -> [K] int64 rows, ascending
    """The rows to send: every row with mask weight >= FULL_DETAIL_WEIGHT (that is drawable), then the detail
    order's rows until `budget` rows in all (None: no budget, every drawable row). `order` from detail_order
    over `count` rows; `mask` [count] weights; `drawable` [count] bool (default: the rows in `order`)."""
    if budget is not None and budget < 0:
        raise ValueError(f"the splat budget must be >= 0, got {budget}")
    if drawable is None:
        drawable = torch.zeros(count, dtype=torch.bool)
        drawable[order] = True
    if budget is None or budget >= len(order):
        return torch.sort(order).values
    chosen = torch.zeros(count, dtype=torch.bool)
    if mask is not None:
        if mask.shape != (count,):
            raise ValueError(f"mask has shape {tuple(mask.shape)} but the scene has {count} Gaussians")
        chosen |= (mask.detach().cpu() >= FULL_DETAIL_WEIGHT) & drawable
    room = budget - int(chosen.sum())
    if room > 0:
        rest = order[~chosen[order]]
        chosen[rest[:room]] = True
    return torch.nonzero(chosen).flatten()


def chunk_bounds(count: int, cap: int | None = None, *, first: int | None = None,
                 growth: float = CHUNK_GROWTH) -> list[int]:  # -> [0, b1, ..., count], increasing
    """Where the detail order is cut into chunks: the view grows one chunk at a time, each level ~`growth` times
    the one before (so a client that draws level k in t s draws level k+1 in about growth * t), and `cap` (the
    budget, when below `count`) is a boundary, so the budget is exactly a number of chunks."""
    first = FIRST_SPLATS if first is None else first
    if first < 1 or growth <= 1.0:
        raise ValueError(f"chunks need first >= 1 and growth > 1, got {first} and {growth}")
    bounds = [0]
    while bounds[-1] < count:
        bounds.append(min(count, max(bounds[-1] + first, int(bounds[-1] * growth))))
    if cap is not None and 0 < cap < count and cap not in bounds:
        bounds = sorted(bounds + [cap])
    return bounds


def chunks_within(bounds: list[int], cap: int | None) -> int:
    """How many chunks of `bounds` fit in `cap` rows (None: all of them)."""
    return len(bounds) - 1 if cap is None else sum(1 for b in bounds[1:] if b <= cap)


class DetailLevels:
    """The detail order of the scene last shown, kept while the scene object is the same (a mask change) or its
    importance is (a display copy with the same parts hidden) — or, with `keep_for_same_count`, while an edit
    streams in-progress scenes that keep the rows. Sorting a capture's rows is the costly part."""

    def __init__(self) -> None:
        self._scene: GaussianScene | None = None
        self._importance: Tensor | None = None
        self._order: Tensor | None = None
        self._drawable: Tensor | None = None

    def rows(self, scene: GaussianScene, budget: int | None, mask: Tensor | None = None, *,
             keep_for_same_count: bool = False) -> Tensor:  # -> [K] int64 rows of `scene`, ascending
        same = self._scene is scene or (keep_for_same_count and self._scene is not None
                                        and len(self._scene) == len(scene))
        if not same:
            importance = splat_importance(scene)
            if self._importance is None or not torch.equal(importance, self._importance):
                self._importance = importance
                self._order, self._drawable = detail_order(importance), importance > 0
        self._scene = scene
        return choose_rows(self._order, budget, len(scene), mask, self._drawable)

    def chunks(self, scene: GaussianScene, level: int, cap: int | None, mask: Tensor | None = None, *,
               keep_for_same_count: bool = False) -> tuple[list[Tensor], Tensor]:
        """The first `level` chunks of the scene's detail order (each [k] int64 rows, ascending) and the rows
        the view holds beside them: every drawable row with mask weight >= FULL_DETAIL_WEIGHT that no chunk
        holds (the selection at full detail, whatever the level). A mask change leaves the chunks as they are."""
        self.rows(scene, 0, None, keep_for_same_count=keep_for_same_count)  # the order of this scene
        bounds = chunk_bounds(len(self._order), cap)
        level = max(0, min(level, len(bounds) - 1))
        chunks = [torch.sort(self._order[a:b]).values for a, b in zip(bounds[:level], bounds[1:level + 1])]
        if mask is None:
            return chunks, torch.zeros(0, dtype=torch.long)
        if mask.shape != (len(scene),):
            raise ValueError(f"mask has shape {tuple(mask.shape)} but the scene has {len(scene)} Gaussians")
        selected = (mask.detach().cpu() >= FULL_DETAIL_WEIGHT) & self._drawable
        selected[self._order[:bounds[level]]] = False
        return chunks, torch.nonzero(selected).flatten()

    def bounds(self, cap: int | None) -> list[int]:
        """chunk_bounds of the detail order last planned (chunks() cuts it there)."""
        return chunk_bounds(len(self._order), cap)
