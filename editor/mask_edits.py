"""What the Mask panel's buttons do to a session's selection: re-cut the last lift, invert, clear, grow,
shrink, drop small islands; and `combine`, how a new selection joins the current one (add / subtract).

SelectionEdits holds no state (all of it lives in the Session): editor.masking.Masking inherits it, so the
panels call these as `ctx.masking.grow(session)` like every other selection tool.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .session import Session


def combine(selection: Tensor, new: Tensor, op: str) -> Tensor:
    """add: union (max of weights); subtract: `selection` without `new` (engine.masks.ops' fuzzy algebra)."""
    from engine.masks import ops

    if op == "add":
        return ops.add(selection, new)
    if op == "subtract":
        return ops.subtract(selection, new)
    raise ValueError(f"unknown selection operation {op!r} (add or subtract)")


class SelectionEdits:
    """The buttons on the current selection (and the threshold slider on the last lift)."""

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
