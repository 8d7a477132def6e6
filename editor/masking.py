"""Selection tools applied to a session: what a click, a rectangle or a mask button does to its selection.

The tool (pick / brush / rect / sam) and the operation (add / subtract) are the session's, chosen in the Mask
panel; gestures arrive from either view as ViewClick / ViewRect. The geometry (which Gaussians a pixel, disc
or rectangle covers; SAM; lifting; grow/shrink) is engine.masks' job — this module only routes and combines.
The long tasks (a SAM click lifted to 3D, selecting a part by its name) are engine.masks.tasks functions run by
the engine worker: this module gathers their inputs from the session, queues them, and applies their result.
The Mask panel's buttons (editor/mask_edits.py) and named parts and mask files (editor/mask_parts.py) are
Masking's too, by inheritance, so the panels reach every selection tool through one `ctx.masking`.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from torch import Tensor

from .gestures import ViewClick, ViewRect
from .mask_edits import SelectionEdits, combine
from .mask_parts import PartsAndFiles
from .session import LiftState, Session

log = logging.getLogger(__name__)

__all__ = ["Masking", "combine"]  # combine lives in editor.mask_edits; tests and callers import it from here


# Pixels of context kept around a brush or rectangle when only that window of the view is rasterized: a
# Gaussian straddling the window edge still has most of its compositing weight inside the window.
WINDOW_MARGIN = 16
# Brush clicks closer together than this (same tool and operation) are one stroke: one history entry.
STROKE_GAP_S = 1.5


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


class Masking(SelectionEdits, PartsAndFiles):
    """The selection tools; one instance serves every session (all state lives in the Session). Its own methods
    are the gestures and the long mask tasks; the buttons on the selection come from SelectionEdits
    (editor/mask_edits.py), named parts and mask files from PartsAndFiles (editor/mask_parts.py)."""

    def __init__(self, sam_checkpoint: str | None = None, *, segmenter=None) -> None:
        """sam_checkpoint: path of a SAM checkpoint for the SAM tool (loaded on first use, on the engine thread);
        `segmenter`: an already loaded engine.masks.sam.SamSegmenter (tests pass a tiny random one)."""
        from engine.masks.sam import SamLoader

        self.sam = SamLoader(sam_checkpoint, segmenter=segmenter)
        self.tasks = None  # editor.engine_link.EngineLink (set by editor.page.connect): SAM and lifting run on its worker
        self.models = None  # editor.models.ModelChoice (set by editor.page.connect): the model text selection reads

    def sam_missing(self) -> str:
        """Why the SAM tool cannot run and how to make it ("" when a checkpoint is there): shown when the tool is
        chosen, before any click, and raised by a click."""
        if self.sam.available:
            return ""
        from engine.masks.sam import missing_checkpoint_message

        download = missing_checkpoint_message("(none given)").split(". ", 1)[-1]  # "Download one of ... its path"
        return ("No SAM checkpoint is installed, so the SAM tool cannot run yet. " + download
                + " with python app.py --sam-checkpoint PATH (or set SPLATEDIT_SAM)")

    def _require_sam(self) -> None:
        """Refuse at once, saying how to give one, when there is no SAM checkpoint to load."""
        missing = self.sam_missing()
        if missing:
            raise ValueError(missing)

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
            label = f"{tool} {op}"
            now = time.monotonic()
            last = getattr(session, "_stroke", None)  # (label, time) of the last brush click
            group = tool == "brush" and last is not None and last[0] == label and now - last[1] <= STROKE_GAP_S
            session._stroke = (label, now) if tool == "brush" else None
            session.set_selection(combine(session.selection, new.float().cpu(), op), label=label, group=group)
            return session.selected_count()
