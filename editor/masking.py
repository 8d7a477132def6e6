"""Selection tools applied to a session: what a click, a rectangle or a mask button does to its selection.

The tool (pick / brush / rect / sam) and the operation (add / subtract) are the session's, chosen in the Mask
panel; gestures arrive from either view as ViewClick / ViewRect. The geometry (which Gaussians a pixel, disc
or rectangle covers; SAM; lifting; grow/shrink) is engine.masks' job — this module only routes and combines.
The long tasks (a SAM click lifted to 3D, selecting a part by its name) are engine.masks.tasks functions run by
the engine worker: this module gathers their inputs from the session, queues them, and applies their result.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .gestures import ViewClick, ViewRect
from .session import LiftState, Session

log = logging.getLogger(__name__)


# Pixels of context kept around a brush or rectangle when only that window of the view is rasterized: a
# Gaussian straddling the window edge still has most of its compositing weight inside the window.
WINDOW_MARGIN = 16


def combine(selection: Tensor, new: Tensor, op: str) -> Tensor:
    """add: union (max of weights); subtract: `selection` without `new` (engine.masks.ops' fuzzy algebra)."""
    from engine.masks import ops

    if op == "add":
        return ops.add(selection, new)
    if op == "subtract":
        return ops.subtract(selection, new)
    raise ValueError(f"unknown selection operation {op!r} (add or subtract)")


def _window(camera, x0: float, y0: float, x1: float, y1: float):
    """(cropped camera, its x/y offset): the view restricted to a box plus WINDOW_MARGIN, clipped to the image.
    Selecting in the window instead of the whole view costs a fraction of the time for a brush-sized box."""
    from engine.masks.pick import crop_camera

    ax = max(0, int(x0) - WINDOW_MARGIN)
    ay = max(0, int(y0) - WINDOW_MARGIN)
    bx = min(camera.width, int(x1) + 1 + WINDOW_MARGIN)
    by = min(camera.height, int(y1) + 1 + WINDOW_MARGIN)
    if bx <= ax or by <= ay:
        raise ValueError("the selection lies outside the view")
    return crop_camera(camera[0:1], ax, ay, bx - ax, by - ay), (ax, ay)


class Masking:
    """The selection tools; one instance serves every session (all state lives in the Session)."""

    def __init__(self, sam_checkpoint: str | None = None, *, segmenter=None) -> None:
        """sam_checkpoint: path of a SAM checkpoint for the SAM tool (loaded on first use, on the engine thread);
        `segmenter`: an already loaded engine.masks.sam.SamSegmenter (tests pass a tiny random one)."""
        from engine.masks.sam import SamLoader

        self.sam = SamLoader(sam_checkpoint, segmenter=segmenter)
        self.tasks = None  # editor.engine_link.EngineLink (set by editor.page.connect): SAM and lifting run on its worker
        self.models = None  # editor.models.ModelChoice (set by editor.page.connect): the model text selection reads

    def _require_sam(self) -> None:
        """Refuse at once, saying how to give one, when there is no SAM checkpoint to load."""
        if not self.sam.available:
            from engine.masks.sam import missing_checkpoint_message

            raise ValueError(missing_checkpoint_message("(none given)")
                             + " with python app.py --sam-checkpoint PATH (or set SPLATEDIT_SAM)")

    # ------------------------------------------------------------------ gestures
    def apply_click(self, session: Session, click: ViewClick) -> int:
        """Apply the session's tool at a click; returns how many Gaussians are selected afterwards. A click on
        empty space changes nothing and leaves a warning in `session.notice` (cleared by the next change)."""
        from engine.masks.pick import NothingHit

        try:
            return self._apply_click(session, click)
        except NothingHit as exc:
            with session.lock:
                session.notice = str(exc)
                session.revision += 1
                count = session.selected_count()
            if session.viewer is not None:
                session.viewer.set_status(f"⚠️ {exc}")
            return count

    def _apply_click(self, session: Session, click: ViewClick) -> int:
        session.check_mask_editable()
        with session.lock:
            tool, op, radius, scene = session.tool, session.op, session.brush_radius, session.scene
        if tool == "sam":
            return self.sam_click(session, click)
        if tool == "rect":
            # A click with the rectangle tool selects a small square, so a click is never silently ignored.
            r = radius
            return self.apply_rect(session, ViewRect(click.camera, (click.pixel[0] - r, click.pixel[1] - r),
                                                     (click.pixel[0] + r, click.pixel[1] + r)))
        x, y = click.pixel
        if tool == "pick":
            from engine.masks.pick import pick_patch

            # the surface patch under a disc of the radius slider's size; NothingHit (a ValueError) for empty space
            new = pick_patch(scene, click.camera[0:1], x, y, radius=radius)
        else:
            from engine.masks.selection import brush

            window, (ox, oy) = _window(click.camera, x - radius, y - radius, x + radius, y + radius)
            new = brush(scene, window, [(x - ox, y - oy)], radius)
        return self._apply(session, new, op, tool)

    def apply_rect(self, session: Session, rect: ViewRect) -> int:
        from engine.masks.selection import rectangle

        session.check_mask_editable()
        with session.lock:
            op, scene = session.op, session.scene
        (x0, y0), (x1, y1) = rect.pixel_min, rect.pixel_max
        window, (ox, oy) = _window(rect.camera, x0, y0, x1, y1)
        new = rectangle(scene, window, x0 - ox, y0 - oy, x1 - ox, y1 - oy)
        return self._apply(session, new, op, "rectangle")

    def sam_click(self, session: Session, click: ViewClick) -> int:
        """SAM on the clicked view and on orbit views around the clicked point, lifted to 3D with the session's
        lift method (voting or 3D-GALP), as a task on the engine thread (engine.masks.tasks.lift_sam_click):
        this returns at once (the current count); the task reports its progress in the session's `mask_task`
        and, when it ends, the lifted weights cut at the threshold slider's value (0.5 by default) become the
        selection."""
        from engine.masks.tasks import lift_sam_click

        self._require_sam()
        if self.tasks is None:
            raise ValueError("the SAM tool needs the engine worker (no engine link attached)")
        with session.lock:
            scene, op, method, num_views = session.scene, session.op, session.lift_method, session.sam_views
            up = tuple(getattr(session, "up", (0.0, 0.0, 1.0)))
        work = partial(lift_sam_click, scene, click.camera[0:1], tuple(click.pixel), self.sam,
                       method=method, num_views=num_views, up=up)
        adopt = self._lift_adopter(session, scene, op, "the scene changed while SAM ran; click again")
        self.tasks.start_mask_task(session, "sam", work, adopt)
        return session.selected_count()

    def select_text(self, session: Session, part: str, prompt: str = "", *, within_selection: bool = False,
                    refine_with_sam: bool = False, num_views: int | None = None) -> int:
        """Select the part named `part` from the editing model's cross-attention to its word in many views,
        lifted with 3D-GALP, as a task on the engine thread (engine.masks.tasks.lift_text_selection): returns at
        once (the current count); progress shows in `session.mask_task`, and the lifted weights become the
        selection through the session's operation, cut at the threshold slider (re-cut like a SAM click's).

        within_selection: frame the views on the current selection (a rough region) instead of the whole scene.
        Refused at once, with what to do, when the model has no attention (closed-form / reference prior) or
        cannot be loaded (what to download: the same model as for editing)."""
        from engine.masks.tasks import lift_text_selection, text_selection_refusal

        part, prompt = (part or "").strip(), (prompt or "").strip()
        if not part:
            raise ValueError("type the part to select, e.g. scarf")
        if prompt and part.lower() not in prompt.lower():
            raise ValueError(f"the prompt must contain the part's words ({part!r}), e.g. 'a toy robot with a {part}'")
        if self.tasks is None:
            raise ValueError("text selection needs the engine worker (no engine link attached)")
        session.check_mask_editable()
        spec = self.models.spec_for(session)
        refusal = text_selection_refusal(spec)
        if refusal:
            raise ValueError(f"{refusal} (the session uses {spec}; set one in the Model tab)")
        self.models.require(spec)  # what to download, before anything is queued
        with session.lock:
            scene, op, up = session.scene, session.op, tuple(session.up)
            region = session.selection.clone() if within_selection else None
            views = int(num_views or session.sam_views)
        if region is not None and not bool((region > 0.5).any()):
            raise ValueError("'only around the selection' needs a selection: select a rough region first")
        if refine_with_sam:
            self._require_sam()
        work = partial(lift_text_selection, scene, part, prompt=prompt, region=region, num_views=max(1, views),
                       up=up, sam=self.sam if refine_with_sam else None)
        adopt = self._lift_adopter(session, scene, op,
                                   "the scene changed while the text selection ran; run it again")
        self.tasks.start_mask_task(session, "text", work, adopt, model=spec)
        return session.selected_count()

    def _lift_adopter(self, session: Session, scene, op: str, changed: str):
        """What a mask task's lifted weights [N] do when it ends: become the session's lift (combined with the
        selection by `op`, cut at the threshold slider) — unless the scene changed meanwhile (`changed` says so)."""

        def adopt(weights: Tensor) -> None:
            with session.lock:
                if session.scene is not scene:
                    raise ValueError(changed)
                session.check_mask_editable()
                session.lift = LiftState(weights=weights, base=session.selection, op=op)
                self.set_threshold(session, session.threshold)

        return adopt

    def _apply(self, session: Session, new: Tensor, op: str, tool: str) -> int:
        with session.lock:
            session.set_selection(combine(session.selection, new.float().cpu(), op), label=f"{tool} {op}")
            return session.selected_count()

    # ------------------------------------------------------------------ buttons
    def set_threshold(self, session: Session, threshold: float, *, live: bool = False) -> int:
        """Re-cut the last lift at `threshold`; `live` (while the slider moves) is not a history entry."""
        with session.lock:
            session.threshold = float(threshold)
            lift = session.lift
            if lift is None:
                return session.selected_count()
            cut = (lift.weights > session.threshold).float()
            session.set_selection(combine(lift.base, cut, lift.op), label=f"lift cut at {threshold:.2f}",
                                  keep_lift=True, record=not live)
            return session.selected_count()

    def invert(self, session: Session) -> int:
        from engine.masks import ops

        with session.lock:
            session.set_selection(ops.invert(session.selection), label="invert")
            return session.selected_count()

    def clear(self, session: Session) -> int:
        with session.lock:
            session.set_selection(torch.zeros_like(session.selection), label="clear")
            return 0

    def grow(self, session: Session, steps: int = 1) -> int:
        from engine.masks import ops

        with session.lock:
            session.set_selection(ops.grow(session.selection, session.scene.means, steps=steps,
                                           neighbours=self._neighbours(session)), label="grow")
            return session.selected_count()

    def shrink(self, session: Session, steps: int = 1) -> int:
        from engine.masks import ops

        with session.lock:
            session.set_selection(ops.shrink(session.selection, session.scene.means, steps=steps,
                                             neighbours=self._neighbours(session)), label="shrink")
            return session.selected_count()

    def remove_islands(self, session: Session) -> int:
        from engine.masks import ops

        with session.lock:
            session.set_selection(ops.remove_islands(session.selection, session.scene.means), label="remove islands")
            return session.selected_count()

    @staticmethod
    def _neighbours(session: Session) -> Tensor:
        """The k-nearest-neighbour graph of the session's scene, computed once per scene."""
        from engine.masks import ops

        cached = getattr(session, "_knn", None)
        if cached is None or cached[0] is not session.scene:
            cached = (session.scene, ops.knn_graph(session.scene.means, 8))
            session._knn = cached
        return cached[1]

    # ------------------------------------------------------------------ parts
    def save_part(self, session: Session, name: str) -> list[str]:
        name = (name or "").strip()
        if not name:
            raise ValueError("give the part a name")
        with session.lock:
            if not bool((session.selection > 0.5).any()):
                raise ValueError("nothing is selected; select the part first")
            parts = dict(session.parts)
            parts[name] = session.selection.clone()
            session.set_parts(parts, label=f"save part {name}")  # a history entry: undo brings the old parts back
            return list(session.parts)

    def select_part(self, session: Session, name: str, op: str = "replace") -> int:
        with session.lock:
            if name not in session.parts:
                raise ValueError(f"no part named {name!r}")
            part = session.parts[name]
            new = part.clone() if op == "replace" else combine(session.selection, part, op)
            session.set_selection(new, label=f"part {name}")
            return session.selected_count()

    def delete_part(self, session: Session, name: str) -> list[str]:
        """Remove the part `name` (a history entry: Undo brings it back)."""
        with session.lock:
            if name not in session.parts:
                raise ValueError(f"no part named {name!r}")
            parts = {n: w for n, w in session.parts.items() if n != name}
            session.set_parts(parts, label=f"delete part {name}")
            return list(session.parts)

    def set_shown_parts(self, session: Session, shown: list[str]) -> None:
        with session.lock:
            session.hidden_parts = set(session.parts) - set(shown or [])
            session._changed()

    # ------------------------------------------------------------------ files
    def save_mask(self, session: Session, path: Path) -> Path:
        """The selection as .npy float32 [N] (the format `python -m engine edit --mask` reads)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with session.lock:
            np.save(path, session.selection.numpy().astype(np.float32))
        return path

    def load_mask(self, session: Session, path: Path) -> int:
        """Load a .npy of per-Gaussian weights (float in [0, 1] or bool) as the selection."""
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path.name}: not a readable .npy mask ({exc})") from exc
        from engine.edit import as_mask

        with session.lock:
            try:
                mask = as_mask(data, len(session.scene))
            except ValueError as exc:
                raise ValueError(f"{path.name}: {exc}") from exc
            session.set_selection(mask, label=f"load {path.name}")
            return session.selected_count()

    def save_parts(self, session: Session, path: Path) -> tuple[Path, Path]:
        """All named parts as MASKS.npy ([P, N] float32) + MASKS.json (names), engine.masks.parts' format."""
        from engine.masks.parts import PartSet

        with session.lock:
            if not session.parts:
                raise ValueError("there are no parts to save; save a selection as a part first")
            names = tuple(session.parts)
            weights = torch.stack([session.parts[n].float() for n in names])
        return PartSet(names, weights).save(path)

    def load_files(self, session: Session, paths: list) -> int:
        """Uploaded mask files: a [N] .npy becomes the selection; a [P, N] .npy (with its .json for names, if
        uploaded too) becomes named parts. Returns the selected count."""
        import shutil
        import tempfile

        from engine.masks.parts import PartSet

        paths = [Path(p) for p in paths or []]
        arrays = [p for p in paths if p.suffix.lower() == ".npy"]
        if len(arrays) != 1:
            raise ValueError(f"upload one .npy mask (and optionally its .json of part names), got {len(arrays)} .npy")
        npy = arrays[0]
        try:
            shape = np.load(npy, mmap_mode="r", allow_pickle=False).shape
        except (OSError, ValueError) as exc:
            raise ValueError(f"{npy.name}: not a readable .npy mask ({exc})") from exc
        if len(shape) == 1:
            return self.load_mask(session, npy)
        with tempfile.TemporaryDirectory() as folder:  # the json must sit beside the npy, with the same stem
            target = Path(folder) / "parts.npy"
            shutil.copy(npy, target)
            for meta in (p for p in paths if p.suffix.lower() == ".json"):
                shutil.copy(meta, target.with_suffix(".json"))
            with session.lock:
                loaded = PartSet.load(target, num_gaussians=len(session.scene))  # PartsError is a ValueError
                parts = dict(session.parts)
                for name, weights in zip(loaded.names, loaded.weights):
                    parts[name] = weights.float().clone()
                session.set_parts(parts, label=f"load parts {npy.name}")
                return session.selected_count()
