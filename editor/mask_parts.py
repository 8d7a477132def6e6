"""Named parts and mask files of a session: save / select / delete / show parts; a selection or all parts
to .npy (+ .json names) and back, in the formats `python -m engine edit --mask` and engine.masks.parts read.

PartsAndFiles holds no state (all of it lives in the Session): editor.masking.Masking inherits it, so the
panels call these as `ctx.masking.save_part(session, name)` like every other selection tool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .mask_edits import combine
from .session import Session


class PartsAndFiles:
    """Named parts (history entries, so Undo brings them back) and mask files in and out."""

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
