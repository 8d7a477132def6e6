"""Undo/redo of a session's state: scene, selection mask, named parts, display name and up axis.

The history is a list of *states*, each labelled by the action that produced it, and a cursor. Undo moves the
cursor back, redo forward, a new action drops everything after the cursor. States hold the exact parameter
tensors (undo restores bit-identical values); consecutive states share a scene object when only the mask,
the parts or the up changed, so such a change costs no scene copy. The history is the ONE owner of this state:
the UI shows it and sends changes as new entries (persistence.py writes it to disk).

Parts across an edit: an edit may add and remove Gaussians (densification, pruning), so the rows of the result
are not those of the input. Given `row_sources` (for each result row, the input row it descends from, -1 for
a Gaussian the edit added in empty space), every part keeps its Gaussians' descendants, loses the pruned ones,
and the new Gaussians join the part(s) that were being edited (see `remap_parts`). Without it, parts survive
only a change that keeps the count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..scene import GaussianScene
from ..up import Up, Z_UP, normalize_up

# How a state's up axis was found: the file's own metadata, its format's convention, a guess from the shape
# (engine.io.detect_up), the user, the generation that made the scene, or nothing known (+z).
UP_SOURCES = ("file", "format", "geometry", "user", "generated", "default")

Parts = tuple[tuple[str, Tensor], ...]  # (name, weights [N]) pairs, in order


@dataclass(frozen=True)
class State:
    """One point in the history: the scene, the mask weights [N] (or None: nothing masked), the named parts
    ((name, weights [N]) pairs, in order), the scene's display name and its up axis (a unit vector, and how
    it was found: one of UP_SOURCES)."""

    scene: GaussianScene
    mask: Tensor | None
    label: str
    id: int
    parts: Parts = ()
    name: str = ""
    up: Up = Z_UP
    up_source: str = "default"


class History:
    """Linear undo/redo over `State`s; the newest `max_states` are kept."""

    def __init__(self, scene: GaussianScene, mask: Tensor | None = None, *, label: str = "load scene",
                 max_states: int = 50, parts=(), name: str = "", up=Z_UP, up_source: str = "default") -> None:
        if max_states < 2:
            raise ValueError(f"max_states must be >= 2 (one undo step), got {max_states}")
        self.max_states = max_states
        self.token = uuid.uuid4().hex[:12]  # names this history's files, so two histories never mix
        self._next_id = 0
        self._states: list[State] = []
        self._cursor = -1
        self._append(State(scene.clone(), _clone_mask(mask), str(label), -1, _clone_parts(parts, len(scene)),
                           str(name), *checked_up(up, up_source)))

    # ------------------------------------------------------------------ reading
    @property
    def current(self) -> State:
        return self._states[self._cursor]

    @property
    def can_undo(self) -> bool:
        return self._cursor > 0

    @property
    def can_redo(self) -> bool:
        return self._cursor < len(self._states) - 1

    def labels(self) -> list[str]:
        return [s.label for s in self._states]

    @property
    def cursor(self) -> int:
        return self._cursor

    def states(self) -> list[State]:
        return list(self._states)

    # ------------------------------------------------------------------ changing
    def push(self, label: str, scene: GaussianScene | None = None, mask: Tensor | None | str = "keep", *,
             parts="keep", name: str | None = None, up=None, up_source: str | None = None,
             row_sources: Tensor | None = None, group: bool = False) -> State:
        """Record a finished action. `group`: the action continues the current entry (the next click of one
        brush stroke): when that entry has the same label, changed only the mask and nothing was undone since,
        it is replaced, so one undo takes back the whole stroke. `scene=None` keeps the current scene (a mask change); `mask="keep"`
        keeps the current mask; `parts="keep"` the named parts (remapped by `row_sources` [N'] when given,
        else dropped when the count changes), `name=None` the scene name and `up=None` the up axis (a new
        `up` needs its `up_source`). All are copied, so later in-place changes by the caller cannot leak in."""
        if group and scene is None and self._continues(label):
            del self._states[self._cursor]
            self._cursor -= 1
        now = self.current
        new_scene = now.scene if scene is None or scene is now.scene else scene.clone()
        new_mask = now.mask if isinstance(mask, str) else _clone_mask(mask)
        if new_mask is not None and new_mask.shape != (len(new_scene),):
            raise ValueError(f"mask has {new_mask.shape[0]} weights but the scene has {len(new_scene)} Gaussians")
        if not isinstance(parts, str):
            if row_sources is not None:
                raise ValueError("give either new parts or the row_sources to remap the current ones, not both")
            new_parts = _clone_parts(parts, len(new_scene))
        elif row_sources is not None:
            new_parts = remap_parts(now.parts, row_sources, len(now.scene), len(new_scene), edited=now.mask)
        else:
            new_parts = now.parts if len(new_scene) == len(now.scene) else ()
        new_up = (now.up, now.up_source) if up is None else checked_up(up, up_source)
        new_name = now.name if name is None else str(name)
        del self._states[self._cursor + 1:]
        state = self._append(State(new_scene, new_mask, str(label), -1, new_parts, new_name, *new_up))
        if len(self._states) > self.max_states:
            drop = len(self._states) - self.max_states
            del self._states[:drop]
            self._cursor -= drop
        return state

    def _continues(self, label: str) -> bool:
        """The current entry is the newest, has `label`, and kept the scene of the entry before it."""
        if self._cursor != len(self._states) - 1 or self._cursor < 1:
            return False
        now, before = self._states[self._cursor], self._states[self._cursor - 1]
        return now.label == label and now.scene is before.scene

    def undo(self) -> State:
        if not self.can_undo:
            raise IndexError("nothing to undo")
        self._cursor -= 1
        return self.current

    def redo(self) -> State:
        if not self.can_redo:
            raise IndexError("nothing to redo")
        self._cursor += 1
        return self.current

    def _append(self, state: State) -> State:
        """Add `state` (its id replaced by this history's next one) after the cursor and move onto it."""
        state = replace(state, id=self._next_id)
        self._next_id += 1
        self._states.append(state)
        self._cursor = len(self._states) - 1
        return state

    @classmethod
    def from_states(cls, states: list[State], cursor: int, max_states: int, token: str) -> "History":
        """A history made of saved states (autosave.restore), keeping their ids and token."""
        history = cls.__new__(cls)
        history.token = token
        history.max_states = max_states
        history._states = list(states)
        history._cursor = cursor
        history._next_id = max(s.id for s in states) + 1
        return history


def checked_up(up, source: str | None) -> tuple[Up, str]:
    """(unit up, source) or ValueError: the up must be a usable direction, the source one of UP_SOURCES."""
    if source not in UP_SOURCES:
        raise ValueError(f"up source {source!r}: expected one of {', '.join(UP_SOURCES)}")
    return normalize_up(up), source


def remap_parts(parts: Parts, row_sources: Tensor, count_before: int, count_after: int, *,
                edited: Tensor | None) -> Parts:
    """Each part's weights carried over an edit whose result row r descends from input row row_sources[r]
    (row_sources: [count_after] integers, -1 for a Gaussian added where there was none).

    A descendant (the row itself, or a clone or split of it) keeps its ancestor's weight; a pruned row simply
    has no descendant. A new row belongs to what was being edited: its weight in a part is the part's mean
    weight over the edited rows, weighted by the edit's mask `edited` [count_before] (so it fully joins a part
    the mask covered exactly, and joins none when nothing was masked)."""
    sources = torch.as_tensor(row_sources).detach().cpu()
    if sources.dtype.is_floating_point or sources.dtype == torch.bool or sources.shape != (count_after,):
        raise ValueError(f"row_sources must be {count_after} integer row indices (one per Gaussian of the "
                         f"result), got {tuple(sources.shape)} {sources.dtype}")
    sources = sources.long()
    if sources.numel() and (int(sources.min()) < -1 or int(sources.max()) >= count_before):
        raise ValueError(f"row_sources must be input rows in [0, {count_before}) or -1 for new Gaussians")
    new = sources < 0
    edited = None if edited is None else edited.detach().float().cpu()
    total = float(edited.sum()) if edited is not None else 0.0
    out = []
    for name, weights in parts:
        carried = weights[sources.clamp(min=0)].clone()
        carried[new] = float((weights * edited).sum()) / total if total > 0 else 0.0
        out.append((name, carried))
    return tuple(out)


def _clone_mask(mask: Tensor | None) -> Tensor | None:
    return None if mask is None else mask.detach().clone()


def _clone_parts(parts, count: int) -> Parts:
    """Named parts (a dict or (name, weights) pairs) as an immutable tuple of copies, each [count]."""
    items = list(parts.items()) if isinstance(parts, dict) else list(parts or ())
    out = []
    for name, weights in items:
        weights = torch.as_tensor(weights).detach().float().cpu().clone()
        if weights.shape != (count,):
            raise ValueError(f"part {name!r} has {tuple(weights.shape)} weights but the scene has {count} Gaussians")
        out.append((str(name), weights))
    return tuple(out)
