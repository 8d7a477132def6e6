"""Several named parts of one scene, saved as MASKS.npy (float32 [P, N] weights) + MASKS.json (names).

    parts = PartSet.empty(len(scene)).with_part("head", weights)
    parts.save("robot_parts.npy")            # writes robot_parts.npy and robot_parts.json
    parts = PartSet.load("robot_parts.npy", num_gaussians=len(scene))

A plain [N] .npy without a json (what `python -m engine mask --out` writes) loads as one part named after
the file. Both files are written to temporaries first and then renamed, so a failed save changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

FORMAT = "splat-part-masks"
VERSION = 1


class PartsError(ValueError):
    """A parts file is missing, unreadable or inconsistent with the scene."""


@dataclass(frozen=True)
class PartSet:
    """Named soft masks of one scene; operations return new sets."""

    names: tuple[str, ...]
    weights: Tensor  # [P, N] in [0, 1]

    def __post_init__(self) -> None:
        if self.weights.dim() != 2 or self.weights.shape[0] != len(self.names):
            raise PartsError(f"weights must be [P={len(self.names)}, N], got {list(self.weights.shape)}")
        if len(set(self.names)) != len(self.names):
            raise PartsError(f"part names must be unique, got {list(self.names)}")
        for name in self.names:
            if not isinstance(name, str) or not name.strip():
                raise PartsError(f"part names must be non-empty strings, got {name!r}")
        if self.weights.numel() and not (torch.isfinite(self.weights).all()):
            raise PartsError("part weights contain NaN or infinite values")
        if self.weights.numel() and (self.weights.min() < 0 or self.weights.max() > 1):
            raise PartsError("part weights must lie in [0, 1]")

    @classmethod
    def empty(cls, num_gaussians: int) -> "PartSet":
        return cls((), torch.zeros(0, num_gaussians))

    @property
    def num_gaussians(self) -> int:
        return int(self.weights.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def get(self, name: str) -> Tensor:
        """The [N] weights of part `name`."""
        return self.weights[self._index(name)]

    def with_part(self, name: str, weights: Tensor) -> "PartSet":
        """Add part `name` (or replace it, keeping its position)."""
        w = torch.as_tensor(weights).detach().float().cpu().reshape(-1)
        if len(w) != self.num_gaussians:
            raise PartsError(f"part {name!r} has {len(w)} weights for a scene of {self.num_gaussians} Gaussians")
        if name in self.names:
            stacked = self.weights.clone()
            stacked[self._index(name)] = w
            return PartSet(self.names, stacked)
        return PartSet(self.names + (name,), torch.cat([self.weights, w[None]]))

    def without(self, name: str) -> "PartSet":
        i = self._index(name)
        keep = [j for j in range(len(self)) if j != i]
        return PartSet(tuple(self.names[j] for j in keep), self.weights[keep])

    def renamed(self, old: str, new: str) -> "PartSet":
        i = self._index(old)
        names = list(self.names)
        names[i] = new
        return PartSet(tuple(names), self.weights)

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no part named {name!r}; parts: {list(self.names)}") from None

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write `path` (.npy, [P, N] float32) and the json beside it; returns both paths."""
        npy, meta = _paths(path)
        npy.parent.mkdir(parents=True, exist_ok=True)
        info = {"format": FORMAT, "version": VERSION, "names": list(self.names), "num_gaussians": self.num_gaussians}
        tmp_npy = npy.with_name(npy.name + ".tmp.npy")
        tmp_meta = meta.with_name(meta.name + ".tmp")
        try:
            np.save(tmp_npy, self.weights.numpy().astype(np.float32))
            tmp_meta.write_text(json.dumps(info, indent=1), encoding="utf-8")
            os.replace(tmp_npy, npy)
            os.replace(tmp_meta, meta)
        finally:
            for tmp in (tmp_npy, tmp_meta):
                tmp.unlink(missing_ok=True)
        return npy, meta

    @classmethod
    def load(cls, path: str | Path, *, num_gaussians: int | None = None) -> "PartSet":
        """Read a parts file (see the module docstring); `num_gaussians` checks it matches the scene."""
        npy, meta = _paths(path)
        if not npy.is_file():
            raise PartsError(f"mask file {npy} does not exist")
        try:
            array = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PartsError(f"mask file {npy} cannot be read as .npy: {exc}") from None
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise PartsError(f"mask file {npy} must hold a numeric [N] or [P, N] array, got {array.dtype} {array.shape}")
        if meta.is_file():
            try:
                info = json.loads(meta.read_text(encoding="utf-8"))
                names = tuple(info["names"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise PartsError(f"{meta} is not a valid parts description ({exc})") from None
        elif array.shape[0] == 1:
            names = (npy.stem,)
        else:
            names = tuple(f"part_{i}" for i in range(array.shape[0]))
        if len(names) != array.shape[0]:
            raise PartsError(f"{meta} names {len(names)} parts but {npy} holds {array.shape[0]}")
        if num_gaussians is not None and array.shape[1] != num_gaussians:
            raise PartsError(f"{npy} has weights for {array.shape[1]} Gaussians but the scene has {num_gaussians}")
        try:
            return cls(names, torch.from_numpy(array.astype(np.float32)))
        except PartsError as exc:
            raise PartsError(f"{npy}: {exc}") from None


def _paths(path: str | Path) -> tuple[Path, Path]:
    npy = Path(path)
    if npy.suffix != ".npy":
        npy = npy.with_name(npy.name + ".npy")
    return npy, npy.with_suffix(".json")
