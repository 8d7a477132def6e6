"""What the Mask panel's buttons do to a session's selection: re-cut the last lift, invert, clear, grow,
shrink, drop small islands; and `combine`, how a new selection joins the current one (add / subtract).

SelectionEdits holds no state (all of it lives in the Session): editor.masking.Masking inherits it, so the
panels call these as `ctx.masking.grow(session)` like every other selection tool.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .session import Session

VOLUMES = ("sphere", "box")


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

    def select_volume(self, session: Session, shape: str, size: float) -> int:
        """Add (or subtract, by the session's operation) the Gaussians inside a sphere or an axis-aligned box
        centred on the current selection (on the scene when nothing is selected). `size` in (0, 1]: the sphere's
        radius as a share of the scene's half diagonal, or the box's half extents as a share of the scene's (so
        the box keeps the scene's proportions). The engine's engine.masks.selection does the geometry."""
        from engine.masks.selection import box, sphere

        if shape not in VOLUMES:
            raise ValueError(f"unknown volume {shape!r} (sphere or box)")
        if not 0 < size <= 1:
            raise ValueError(f"volume size must be in (0, 1], got {size}")
        with session.lock:
            scene, selection, op = session.scene, session.selection, session.op
            lo, hi = scene.bounding_box(quantile=0.01 if len(scene) > 200 else 0.0)
            half = ((hi - lo) / 2).clamp_min(1e-6)
            weights = selection.float()
            if float(weights.sum()) > 0:
                center = (scene.means.detach().float().cpu() * weights[:, None]).sum(0) / weights.sum()
            else:
                center = (lo + hi) / 2
            if shape == "sphere":
                new = sphere(scene, center, float(half.norm()) * size)
            else:
                new = box(scene, center, half * size)
            session.set_selection(combine(selection, new, op), label=f"{shape} {op}")
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
