"""What the undo history keeps of a scene change: the rows that differ, not the scenes.

Why: a real capture is 100-1,500 MB of parameters; a history of whole scenes per step multiplies that by the
number of edits. An edit changes the rows of one part (and may add or prune a few), so a step stores

- how the rows of the two scenes correspond (`links`): identity for a change that keeps the count, else for
  every row of each side the row of the other side it equals bit for bit (-1: none), built from the edit's
  `row_sources` (or from the rows' positions when there are none);
- the values of the rows of the side the history is NOT on that the other side cannot reproduce.

The history holds one whole scene (its current one). Going back rebuilds the older scene from the newer one
plus the stored rows, and keeps the newer one's unreproducible rows instead (so redo can go forward again):
at any time a step holds one side's unique rows. Every value is a bit-exact copy; nothing is recomputed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..scene import PARAM_NAMES, GaussianScene

_ROWS_PER_CHUNK = 1 << 18  # row comparisons in slices: a bounded temporary however large the scene
_BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
         torch.float64: torch.int64}


def same_rows(a: Tensor, b: Tensor) -> Tensor:  # a, b [n, ...] -> [n] bool: row i identical bit for bit
    """Bitwise row equality (so -0.0 != 0.0 and a NaN equals itself: what undo must restore is the bits)."""
    out = torch.empty(a.shape[0], dtype=torch.bool, device=a.device)
    bits = _BITS[a.dtype]
    for start in range(0, a.shape[0], _ROWS_PER_CHUNK):
        x = a[start:start + _ROWS_PER_CHUNK].contiguous().view(bits)
        y = b[start:start + _ROWS_PER_CHUNK].contiguous().view(bits)
        out[start:start + _ROWS_PER_CHUNK] = (x == y).reshape(x.shape[0], -1).all(dim=1)
    return out


def _rows_equal(a: GaussianScene, b: GaussianScene, a_rows: Tensor | None = None,
                b_rows: Tensor | None = None) -> Tensor:  # -> [k] bool
    """a[a_rows[i]] == b[b_rows[i]] for every parameter, bit for bit (None: row i of both, same count)."""
    count = len(a) if a_rows is None else len(a_rows)
    equal = torch.ones(count, dtype=torch.bool, device=a.means.device)
    for name in PARAM_NAMES:
        x, y = getattr(a, name), getattr(b, name)
        for start in range(0, count, _ROWS_PER_CHUNK):
            part = slice(start, start + _ROWS_PER_CHUNK)
            if a_rows is None:
                equal[part] &= same_rows(x[part], y[part])
            else:
                equal[part] &= same_rows(x[a_rows[part]], y[b_rows[part]])
    return equal


def _comparable(a: GaussianScene, b: GaussianScene) -> bool:
    return (a.means.dtype == b.means.dtype and a.means.device == b.means.device and a.means.dtype in _BITS
            and a.shN.shape[1] == b.shN.shape[1])


class SceneStep:
    """The change from scene `before` to scene `after`, holding `before`'s unique rows (the history is on
    `after`). `row_sources` [len(after)]: the row of `before` each row of `after` descends from (-1: new)."""

    def __init__(self, before: GaussianScene, after: GaussianScene, row_sources: Tensor | None = None) -> None:
        self.counts = (len(before), len(after))
        self.whole = not _comparable(before, after)  # nothing to share: keep the other scene whole
        self.links: tuple[Tensor, Tensor] | None = None  # (after_from_before [n_after], before_from_after [n_before])
        self.changed: Tensor | None = None  # same count, no links: rows that differ [k]
        self.unique: tuple[Tensor, Tensor] | None = None  # (rows only `before` has, rows only `after` has)
        self._stored: dict[str, Tensor] | GaussianScene
        self._at_after = True
        with torch.no_grad():
            if self.whole:
                self._stored = before
                return
            n_before, n_after = self.counts
            device = before.means.device
            positional = row_sources is None or (
                n_before == n_after and torch.equal(torch.as_tensor(row_sources).cpu(), torch.arange(n_after)))
            if positional and n_before == n_after:
                self.changed = torch.nonzero(~_rows_equal(before, after)).flatten()
                self._stored = _take(before, self.changed)
                return
            if row_sources is None:  # a count change without lineage: rows correspond by position
                sources = torch.arange(n_after, device=device)
                sources[n_before:] = -1
            else:
                sources = torch.as_tensor(row_sources).to(device=device, dtype=torch.long)
            has = sources >= 0
            equal = torch.zeros(n_after, dtype=torch.bool, device=device)
            kept = torch.nonzero(has).flatten()
            equal[kept] = _rows_equal(before, after, sources[kept], kept)
            after_from_before = torch.where(equal, sources, torch.full_like(sources, -1))
            before_from_after = torch.full((n_before,), -1, dtype=torch.long, device=device)
            same = torch.nonzero(equal).flatten()
            before_from_after[after_from_before[same]] = same
            self.links = (after_from_before.int(), before_from_after.int())
            self.unique = (torch.nonzero(before_from_after < 0).flatten().int(),
                           torch.nonzero(after_from_before < 0).flatten().int())
            self._stored = _take(before, self.unique[0])

    @property
    def empty(self) -> bool:
        """True when `after` is `before` bit for bit (the history then keeps one scene object)."""
        return self.changed is not None and len(self.changed) == 0

    def nbytes(self) -> int:
        """Bytes this step holds (stored rows and row links)."""
        tensors = list(self._stored.params().values() if isinstance(self._stored, GaussianScene)
                       else self._stored.values())
        for group in (self.links, self.unique, (self.changed,) if self.changed is not None else None):
            tensors += list(group or ())
        return sum(t.numel() * t.element_size() for t in tensors)

    def back(self, after: GaussianScene) -> GaussianScene:
        """`before`, rebuilt from `after`; from now on the step holds `after`'s unique rows."""
        if not self._at_after:
            raise RuntimeError("this step was already undone")
        before = self._rebuild(after, to_before=True)
        self._at_after = False
        return before

    def forward(self, before: GaussianScene) -> GaussianScene:
        """`after`, rebuilt from `before`; from now on the step holds `before`'s unique rows."""
        if self._at_after:
            raise RuntimeError("this step is already done")
        after = self._rebuild(before, to_before=False)
        self._at_after = True
        return after

    @torch.no_grad()
    def _rebuild(self, current: GaussianScene, *, to_before: bool) -> GaussianScene:
        stored = self._stored
        if self.whole:
            self._stored = current
            return stored
        if self.changed is not None:
            self._stored = _take(current, self.changed)
            params = {name: t.clone() for name, t in current.items()}
            for name, values in stored.items():
                params[name][self.changed] = values
            return GaussianScene.trusted(**params)
        other_from_current = self.links[1] if to_before else self.links[0]
        other_unique = self.unique[0] if to_before else self.unique[1]
        self._stored = _take(current, self.unique[1] if to_before else self.unique[0])
        gather = other_from_current.long().clamp(min=0)
        rows = other_unique.long()
        params = {}
        for name, t in current.items():
            out = t[gather]
            out[rows] = stored[name]
            params[name] = out
        return GaussianScene.trusted(**params)


def _take(scene: GaussianScene, rows: Tensor) -> dict[str, Tensor]:
    """Copies of `rows` of every parameter."""
    index = rows.long()
    return {name: t[index].clone() for name, t in scene.items()}


def forward_delta(step: SceneStep, after: GaussianScene) -> dict[str, object] | None:
    """What rebuilds `after` from `before` (apply_delta), for storing a step on disk beside `before`: the rows
    of `after` that `before` cannot reproduce, and for a count change the row links. None for a step that keeps
    a whole scene (nothing is shared: store `after` whole). `after` must be the step's after-scene."""
    if step.whole:
        return None
    if len(after) != step.counts[1]:
        raise ValueError(f"the step goes to {step.counts[1]} Gaussians, the scene given has {len(after)}")
    if step.changed is not None:
        return {"count": len(after), "rows": step.changed.clone(), "values": _take(after, step.changed)}
    after_from_before, _ = step.links
    unique_after = step.unique[1]
    return {"count": len(after), "after_from_before": after_from_before.clone(), "rows": unique_after.clone(),
            "values": _take(after, unique_after)}


@torch.no_grad()
def apply_delta(before: GaussianScene, delta: dict) -> GaussianScene:
    """The scene `forward_delta` described, rebuilt from `before` (bit for bit). Raises ValueError when the
    delta does not fit `before` (another scene's, or damaged)."""
    rows = torch.as_tensor(delta["rows"]).long()
    values = delta["values"]
    links = delta.get("after_from_before")
    count = int(delta["count"])
    if links is None and count != len(before):
        raise ValueError(f"the delta is for a scene of {count} Gaussians, not {len(before)}")
    if links is not None and (len(links) != count or (len(links) and int(links.max()) >= len(before))):
        raise ValueError(f"the delta's row links do not fit a scene of {len(before)} Gaussians")
    if set(values) != set(PARAM_NAMES):
        raise ValueError(f"the delta holds {sorted(values)}, expected every parameter")
    gather = None if links is None else torch.as_tensor(links).long().clamp(min=0)
    params = {}
    for name, t in before.items():
        out = t.clone() if gather is None else t[gather]
        if len(rows):
            out[rows] = values[name].to(out.device, out.dtype)
        params[name] = out
    return GaussianScene.trusted(**params)
