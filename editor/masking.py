"""Selection tools applied to a session: what a click, a rectangle or a mask button does to its selection.

The tool (pick / brush / rect / sam) and the operation (add / subtract) are the session's, chosen in the Mask
panel; gestures arrive from either view as ViewClick / ViewRect. The geometry (which Gaussians a pixel, disc
or rectangle covers; SAM; lifting; grow/shrink) is engine.masks' job — this module only routes and combines.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .gestures import ViewClick, ViewRect
from .session import LiftState, Session

log = logging.getLogger(__name__)


def _selection_ops():
    """engine.masks' selection tools (pick / brush / rectangle / grow / shrink)."""
    try:
        from engine.masks import selection  # type: ignore[attr-defined]

        return selection
    except ImportError:  # TODO(app): interim until engine/masks/selection.py lands
        from . import _interim_selection

        return _interim_selection


def combine(selection: Tensor, new: Tensor, op: str) -> Tensor:
    """add: union (max of weights); subtract: remove the new weights."""
    if op == "add":
        return torch.maximum(selection, new)
    if op == "subtract":
        return (selection - new).clamp_min(0.0)
    raise ValueError(f"unknown selection operation {op!r} (add or subtract)")


class Masking:
    """The selection tools; one instance serves every session (all state lives in the Session)."""

    def __init__(self, sam_checkpoint: str | None = None) -> None:
        self.sam_checkpoint = sam_checkpoint

    # ------------------------------------------------------------------ gestures
    def apply_click(self, session: Session, click: ViewClick) -> int:
        """Apply the session's tool at a click; returns how many Gaussians are selected afterwards."""
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
        sel = _selection_ops()

        if tool == "pick":
            new = sel.pick(scene, click.camera, click.pixel)
        else:
            new = sel.brush(scene, click.camera, [click.pixel], radius)
        return self._apply(session, new, op, tool)

    def apply_rect(self, session: Session, rect: ViewRect) -> int:
        session.check_mask_editable()
        sel = _selection_ops()

        with session.lock:
            op, scene = session.op, session.scene
        new = sel.rectangle(scene, rect.camera, rect.pixel_min, rect.pixel_max)
        return self._apply(session, new, op, "rectangle")

    def sam_click(self, session: Session, click: ViewClick) -> int:
        """SAM on views around the clicked point, lifted to 3D with the session's lift method."""
        from engine.masks import sam

        with session.lock:
            scene, op, method, num_views = session.scene, session.op, session.lift_method, session.sam_views
        weights = sam.click_to_mask(
            scene, click.camera, click.pixel, checkpoint=self.sam_checkpoint, num_views=num_views, method=method
        )
        with session.lock:
            base = session.selection
            session.lift = LiftState(weights=weights.float().cpu(), base=base, op=op)
        return self.set_threshold(session, session.threshold)

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
        with session.lock:
            session.set_selection(1.0 - session.selection, label="invert")
            return session.selected_count()

    def clear(self, session: Session) -> int:
        with session.lock:
            session.set_selection(torch.zeros_like(session.selection), label="clear")
            return 0

    def grow(self, session: Session, steps: int = 1) -> int:
        sel = _selection_ops()

        with session.lock:
            session.set_selection(sel.grow(session.scene, session.selection, steps=steps), label="grow")
            return session.selected_count()

    def shrink(self, session: Session, steps: int = 1) -> int:
        sel = _selection_ops()

        with session.lock:
            session.set_selection(sel.shrink(session.scene, session.selection, steps=steps), label="shrink")
            return session.selected_count()

    # ------------------------------------------------------------------ parts
    def save_part(self, session: Session, name: str) -> list[str]:
        name = (name or "").strip()
        if not name:
            raise ValueError("give the part a name")
        with session.lock:
            if not bool((session.selection > 0.5).any()):
                raise ValueError("nothing is selected; select the part first")
            session.parts[name] = session.selection.clone()
            session.revision += 1
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
        with session.lock:
            session.parts.pop(name, None)
            session.hidden_parts.discard(name)
            session.revision += 1
            session._changed()
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
