"""Undo/redo of a session's state: scene, selection mask, named parts, display name and up axis.

The history is a list of *states*, each labelled by the action that produced it, and a cursor. Undo moves the
cursor back, redo forward, a new action drops everything after the cursor. Undo and redo restore
bit-identical values. Memory: the history holds one whole scene, the current one; every other state's scene is
kept as what changed (deltas.SceneStep: the rows that differ, in one direction at a time), and masks are
packed (PackedMask: only the weighted rows of a small selection). A real capture is hundreds of MB, and a
history of whole scenes per step was the editor's largest memory cost. Consecutive states share one scene
object when only the mask, the parts or the up changed. The history is the ONE owner of this state: the UI
shows it and sends changes as new entries (persistence.py writes it to disk).

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
from .deltas import SceneStep

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


@dataclass(frozen=True)
class Record:
    """A state as the history stores it: everything but the scene, the mask packed (PackedMask), and `step`,
    how its scene differs from the previous state's (None: the same scene object, or the first state)."""

    packed_mask: PackedMask
    label: str
    id: int
    count: int  # Gaussians in the state's scene
    parts: Parts
    name: str
    up: Up
    up_source: str
    step: SceneStep | None = None

    @property
    def mask(self) -> Tensor | None:
        return self.packed_mask.unpack()


class History:
    """Linear undo/redo over states; the newest `max_states` are kept. Holds ONE scene (the current one) and
    per state the change from the previous one (deltas.SceneStep), so memory grows with what edits change,
    not with the scene's size times the number of steps."""

    def __init__(self, scene: GaussianScene, mask: Tensor | None = None, *, label: str = "load scene",
                 max_states: int = 50, parts=(), name: str = "", up=Z_UP, up_source: str = "default",
                 owned: bool = False) -> None:
        """`owned`: the caller hands `scene` over (one it just made, e.g. read from a file, and that nobody
        changes in place): kept as it is instead of copied, so opening a scene does not hold it twice."""
        if max_states < 2:
            raise ValueError(f"max_states must be >= 2 (one undo step), got {max_states}")
        self.max_states = max_states
        self.token = uuid.uuid4().hex[:12]  # names this history's files, so two histories never mix
        self._next_id = 0
        self._records: list[Record] = []
        self._cursor = -1
        self._scene = scene if owned else scene.clone()
        self._current: State | None = None
        self._append(Record(PackedMask.pack(mask), str(label), -1, len(scene), _clone_parts(parts, len(scene)),
                            str(name), *checked_up(up, up_source)))

    # ------------------------------------------------------------------ reading
    @property
    def current(self) -> State:
        """The state at the cursor (the same object until the cursor or the states change)."""
        if self._current is None:
            r = self._records[self._cursor]
            self._current = State(self._scene, r.mask, r.label, r.id, r.parts, r.name, r.up, r.up_source)
        return self._current

    @property
    def can_undo(self) -> bool:
        return self._cursor > 0

    @property
    def can_redo(self) -> bool:
        return self._cursor < len(self._records) - 1

    def labels(self) -> list[str]:
        return [r.label for r in self._records]

    @property
    def cursor(self) -> int:
        return self._cursor

    def records(self) -> list[Record]:
        """Every state without its scene (cheap): what the autosave writes beside the scenes."""
        return list(self._records)

    def scene_at(self, index: int) -> GaussianScene:
        """State `index`'s scene: the current one as is, another rebuilt step by step (costs a scene each)."""
        if not 0 <= index < len(self._records):
            raise IndexError(f"no state {index}; the history has {len(self._records)}")
        return self._scenes(index, index)[index]

    def states(self) -> list[State]:
        """Every state with its scene. Rebuilds every scene that differs from the current one, so it costs as
        much memory as a history of whole scenes: for tests and small histories, not the app's hot paths."""
        scenes = self._scenes(0, len(self._records) - 1)
        return [State(scenes[i], r.mask, r.label, r.id, r.parts, r.name, r.up, r.up_source)
                for i, r in enumerate(self._records)]

    def nbytes(self) -> int:
        """Bytes held: the current scene, every step's stored rows, masks and parts (shared ones once)."""
        total = sum(t.numel() * t.element_size() for _, t in self._scene.items())
        seen_parts: set[int] = set()
        for r in self._records:
            total += r.packed_mask.nbytes() + (r.step.nbytes() if r.step is not None else 0)
            if id(r.parts) not in seen_parts:
                seen_parts.add(id(r.parts))
                total += sum(w.numel() * w.element_size() for _, w in r.parts)
        return total

    # ------------------------------------------------------------------ changing
    def push(self, label: str, scene: GaussianScene | None = None, mask: Tensor | None | str = "keep", *,
             parts="keep", name: str | None = None, up=None, up_source: str | None = None,
             row_sources: Tensor | None = None, group: bool = False, owned: bool = False) -> State:
        """Record a finished action. `group`: the action continues the current entry (the next click of one
        brush stroke): when that entry has the same label, changed only the mask and nothing was undone since,
        it is replaced, so one undo takes back the whole stroke. `scene=None` keeps the current scene (a mask change); `mask="keep"`
        keeps the current mask; `parts="keep"` the named parts (remapped by `row_sources` [N'] when given,
        else dropped when the count changes), `name=None` the scene name and `up=None` the up axis (a new
        `up` needs its `up_source`). All are copied, so later in-place changes by the caller cannot leak in;
        `owned`: the caller hands `scene` over (a job's fresh result, changed in place by no one), kept without
        the copy: at 3M Gaussians the copy was a third whole scene beside the input and the result.
        Bad input raises ValueError and leaves the history as it was."""
        if group and scene is None and self._continues(label):
            del self._records[self._cursor]
            self._cursor -= 1
        now = self._records[self._cursor]
        old_scene = self._scene
        new_scene = old_scene if scene is None or scene is old_scene else scene
        count = len(new_scene)
        new_mask = now.packed_mask if isinstance(mask, str) else PackedMask.pack(mask)
        if new_mask.count is not None and new_mask.count != count:
            raise ValueError(f"mask has {new_mask.count} weights but the scene has {count} Gaussians")
        if not isinstance(parts, str):
            if row_sources is not None:
                raise ValueError("give either new parts or the row_sources to remap the current ones, not both")
            new_parts = _clone_parts(parts, count)
        elif row_sources is not None:
            new_parts = remap_parts(now.parts, row_sources, now.count, count, edited=now.mask)
        else:
            new_parts = now.parts if count == now.count else ()
        new_up = (now.up, now.up_source) if up is None else checked_up(up, up_source)
        new_name = now.name if name is None else str(name)
        step = None
        if new_scene is not old_scene:
            new_scene = new_scene if owned else new_scene.clone()
            step = SceneStep(old_scene, new_scene, row_sources)
            if step.empty:  # the same values: keep the one scene object
                new_scene, step = old_scene, None
        del self._records[self._cursor + 1:]
        self._scene = new_scene
        self._append(Record(new_mask, str(label), -1, count, new_parts, new_name, *new_up, step=step))
        if len(self._records) > self.max_states:
            drop = len(self._records) - self.max_states
            del self._records[:drop]
            self._records[0] = replace(self._records[0], step=None)  # nothing before it to go back to
            self._cursor -= drop
        return self.current

    def push_result(self, start_id: int, label: str, scene: GaussianScene, mask: Tensor | None, *,
                    row_sources: Tensor | None = None, **kw) -> str:
        """Record a job's result computed from state `start_id` (the current one when the job began). States are
        compared by id, not object: an undo + redo rebuilds the current State object (the scene walked back
        and forth), and the user's work must not be lost for that. Returns "" when the history is where the
        job left it; else a note for the user, saying where the result went:

        - the start was undone meanwhile and nothing new was done: the history steps forward to it again and
          the result follows it, as if the undo had come after the job;
        - something new was done meanwhile (or the start fell out of the history): the result goes on top, so
          Undo returns to where the user was. Its parts are the current ones when the count still matches the
          job's input, else the start's, carried over the edit's rows (`row_sources` [N']) either way.
        `kw`: push's parts / name / up / up_source / owned."""
        if self.current.id == start_id:
            self.push(label, scene=scene, mask=mask, row_sources=row_sources, **kw)
            return ""
        ids = [r.id for r in self._records]
        if start_id in ids[self._cursor + 1:]:
            while self.current.id != start_id:
                self.redo()
            started = self.current.label
            self.push(label, scene=scene, mask=mask, row_sources=row_sources, **kw)
            return (f"the history was undone while this ran; the result was added after {started!r}, the state "
                    "it started from (Undo takes it back)")
        now = self._records[self._cursor]
        start = self._records[ids.index(start_id)] if start_id in ids else None
        if isinstance(kw.get("parts", "keep"), str):  # "keep": carry the parts over to the result's rows
            if start is not None and row_sources is not None:
                base = now if now.count == start.count else start
                kw["parts"] = remap_parts(base.parts, row_sources, start.count, len(scene), edited=start.mask)
            elif now.count != len(scene):
                kw["parts"] = ()  # the rows cannot be matched to the current ones
        started = repr(start.label) if start is not None else "a state no longer in the history"
        self.push(label, scene=scene, mask=mask, **kw)
        return (f"the history moved on while this ran (it was at {now.label!r}); the result, made from {started}, "
                "was added on top — Undo returns to where you were")

    def _continues(self, label: str) -> bool:
        """The current entry is the newest, has `label`, and kept the scene of the entry before it."""
        if self._cursor != len(self._records) - 1 or self._cursor < 1:
            return False
        now = self._records[self._cursor]
        return now.label == label and now.step is None  # no scene step: it changed the mask (or parts) only

    def undo(self) -> State:
        if not self.can_undo:
            raise IndexError("nothing to undo")
        step = self._records[self._cursor].step
        if step is not None:
            self._scene = step.back(self._scene)
        self._move(self._cursor - 1)
        return self.current

    def redo(self) -> State:
        if not self.can_redo:
            raise IndexError("nothing to redo")
        step = self._records[self._cursor + 1].step
        if step is not None:
            self._scene = step.forward(self._scene)
        self._move(self._cursor + 1)
        return self.current

    def _move(self, cursor: int) -> None:
        self._cursor = cursor
        self._current = None

    def _append(self, record: Record) -> None:
        """Add `record` (its id replaced by this history's next one) after the cursor and move onto it."""
        self._records.append(replace(record, id=self._next_id))
        self._next_id += 1
        self._move(len(self._records) - 1)

    def _scenes(self, first: int, last: int) -> dict[int, GaussianScene]:
        """Scenes of states first..last, rebuilt by walking the steps from the current scene and back (the
        history is left exactly as it was: every step is walked back again)."""
        out = {self._cursor: self._scene} if first <= self._cursor <= last else {}
        for direction in (-1, 1):
            scene, cursor, walked = self._scene, self._cursor, []
            while (cursor > first) if direction < 0 else (cursor < last):
                step = self._records[cursor if direction < 0 else cursor + 1].step
                if step is not None:
                    scene = step.back(scene) if direction < 0 else step.forward(scene)
                    walked.append(step)
                cursor += direction
                if first <= cursor <= last:
                    out[cursor] = scene
            for step in reversed(walked):  # put every step back on the current side
                scene = step.forward(scene) if direction < 0 else step.back(scene)
        return out

    @classmethod
    def from_states(cls, states: list[State], cursor: int, max_states: int, token: str) -> "History":
        """A history made of saved states, keeping their ids and token; consecutive states holding the same
        scene object share it, the others are stored as the rows that differ."""
        if not states or not 0 <= cursor < len(states):
            raise ValueError(f"cursor {cursor} outside the {len(states)} states")
        return cls.rebuild(((state, None) for state in states), cursor, max_states, token)

    @classmethod
    def rebuild(cls, entries, cursor: int, max_states: int, token: str) -> "History":
        """from_states over an iterable of (State, row_sources or None) read one at a time (autosave.restore:
        only the scene being added is held beside the history). `row_sources` [N'] links a count-changing
        state's rows to the previous state's (-1: new rows), so its step stores only the new rows."""
        history: History | None = None
        previous: State | None = None
        ids: list[int] = []
        for state, sources in entries:
            ids.append(state.id)
            if history is None:
                history = cls(state.scene, state.mask, label=state.label, max_states=10**9, parts=state.parts,
                              name=state.name, up=state.up, up_source=state.up_source)
            else:
                shared = state.parts is previous.parts and len(state.scene) == len(previous.scene)
                keep = shared or sources is not None
                history.push(state.label, scene=state.scene, mask=state.mask, name=state.name, up=state.up,
                             up_source=state.up_source, parts="keep" if keep else state.parts,
                             row_sources=sources if len(state.scene) != len(previous.scene) else None)
                if sources is not None and not shared:  # the saved parts, not the ones remapped by the push
                    last = history._records[-1]
                    history._records[-1] = replace(last, parts=_clone_parts(state.parts, last.count))
            previous = state
        if history is None or not 0 <= cursor < len(ids):
            raise ValueError(f"cursor {cursor} outside the {len(ids)} states")
        history._records = [replace(r, id=i) for r, i in zip(history._records, ids)]
        while history.cursor > cursor:
            history.undo()
        history.token, history.max_states = token, max_states
        history._next_id = max(ids) + 1
        history._current = None
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


@dataclass(frozen=True)
class PackedMask:
    """Mask weights [N] as stored: None, or the non-zero rows and their weights when that is smaller (a part
    is a small share of a capture: 8 bytes per selected row instead of 4 per row), else a dense copy. Exact:
    unpack() gives back the same bits."""

    count: int | None  # N, None for no mask
    dense: Tensor | None = None  # [N]
    rows: Tensor | None = None  # [k] int32 rows whose weight is not +0.0
    values: Tensor | None = None  # [k] their weights
    dtype: torch.dtype = torch.float32
    device: torch.device | str = "cpu"

    @classmethod
    def pack(cls, mask: Tensor | None) -> "PackedMask":
        if mask is None:
            return cls(None)
        mask = mask.detach()
        if mask.dim() != 1:
            raise ValueError(f"a mask holds one weight per Gaussian [N], got shape {tuple(mask.shape)}")
        bits = {torch.float32: torch.int32, torch.float64: torch.int64}.get(mask.dtype)
        if bits is not None:
            rows = torch.nonzero(mask.contiguous().view(bits) != 0).flatten()
            if 2 * len(rows) < len(mask):
                return cls(len(mask), rows=rows.int(), values=mask[rows].clone(), dtype=mask.dtype,
                           device=mask.device)
        return cls(len(mask), dense=mask.clone(), dtype=mask.dtype, device=mask.device)

    def unpack(self) -> Tensor | None:
        if self.count is None or self.dense is not None:
            return self.dense  # read-only by convention, like every tensor of a State
        out = torch.zeros(self.count, dtype=self.dtype, device=self.device)
        out[self.rows.long()] = self.values
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.dense, self.rows, self.values) if t is not None)
