"""Crash-safe autosave of a session's History to a workspace folder, and its restore.

Layout (one folder per session):

    workspace/
      history.json        token, labels, cursor, per state its ids, name and up — written last, atomically: the
                          commit point
      scene_<token>_<id>.pt  the parameters of each distinct scene {name: tensor} (mask changes share one)
      mask_<token>_<id>.pt   each state's mask weights {"mask": tensor or None}
      parts_<token>_<id>.pt  each distinct set of named parts {name: weights [N]} (states that keep them share one)
      current.ply         the current scene for any viewer (when engine.io can write .ply)
      current_mask.npy    the current mask weights

Each file is written to a temporary name and renamed into place, so a crash mid-save leaves the previous
autosave intact. State files are immutable once written: a save writes only the new ones.

Autosaves written before the history held the up axis have no "up" in history.json; their states restore with
the up the editor kept beside them then (`up.json`: {"up": [x, y, z], "source": ...}), else +z ("default").
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..scene import GaussianScene
from ..up import Up, Z_UP, normalize_up
from .history import UP_SOURCES, History, State

FORMAT_VERSION = 1
META_NAME = "history.json"
LEGACY_UP_NAME = "up.json"  # the editor's up sidecar of older autosaves (read on restore, never written)


def _atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename the temporary file onto `path` (atomic on POSIX). The temporary
    name keeps `path`'s suffix, so writers that pick a format by extension still work."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parts_ids(history: History) -> list[int]:
    """For each state, the id of the first state holding the same parts tuple (shared while parts are kept)."""
    ids: list[int] = []
    records = history.records()
    for i, record in enumerate(records):
        ids.append(ids[-1] if i and record.parts is records[i - 1].parts else record.id)
    return ids


def _scene_ids(history: History) -> list[int]:
    """For each state, the id of the first state holding the same scene (shared on mask changes)."""
    ids: list[int] = []
    for i, record in enumerate(history.records()):
        ids.append(ids[-1] if i and record.step is None else record.id)
    return ids


def autosave(history: History, workspace: str | os.PathLike) -> Path:
    """Write the history to `workspace` (created if needed); returns the folder. Safe to call after every
    action: only new states are written, and the metadata file is replaced last."""
    folder = Path(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    states = history.records()  # no scenes: a scene is rebuilt (history.scene_at) only when its file is missing
    scene_ids = _scene_ids(history)
    parts_ids = _parts_ids(history)
    for state, pid in zip(states, parts_ids):
        parts_path = folder / f"parts_{history.token}_{pid}.pt"
        if state.parts and not parts_path.exists():
            names, weights = [n for n, _ in state.parts], [w for _, w in state.parts]
            _atomic_write(parts_path, lambda tmp, n=names, w=weights: torch.save({"names": n, "weights": w}, tmp))
    for index, (state, sid) in enumerate(zip(states, scene_ids)):
        scene_path = folder / f"scene_{history.token}_{sid}.pt"
        if not scene_path.exists():
            params = {name: t.detach().cpu() for name, t in history.scene_at(index).items()}
            _atomic_write(scene_path, lambda tmp, p=params: torch.save(p, tmp))
        mask_path = folder / f"mask_{history.token}_{state.id}.pt"
        if not mask_path.exists():
            mask = state.mask
            mask = None if mask is None else mask.detach().cpu()
            _atomic_write(mask_path, lambda tmp, m=mask: torch.save({"mask": m}, tmp))
    current_sid = scene_ids[history.cursor]
    previous = _read_meta(folder)
    meta = {
        "current_scene": f"{history.token}_{current_sid}",
        "version": FORMAT_VERSION,
        "saved_at": time.time(),
        "token": history.token,
        "cursor": history.cursor,
        "max_states": history.max_states,
        "states": [
            {"id": s.id, "label": s.label, "scene": sid, "count": s.count, "name": s.name,
             "parts": pid if s.parts else None, "up": list(s.up), "up_source": s.up_source}
            for s, sid, pid in zip(states, scene_ids, parts_ids)
        ],
    }
    _atomic_write(folder / META_NAME, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    # Files no longer referenced (undone-then-overwritten or too old states) can go.
    live = {f"scene_{history.token}_{sid}.pt" for sid in scene_ids} | {f"mask_{history.token}_{s.id}.pt" for s in states}
    live |= {f"parts_{history.token}_{pid}.pt" for s, pid in zip(states, parts_ids) if s.parts}
    for path in list(folder.glob("scene_*.pt")) + list(folder.glob("mask_*.pt")) + list(folder.glob("parts_*.pt")):
        if path.name not in live:
            path.unlink(missing_ok=True)
    # Conveniences for people and viewers; the exact store is above.
    current = history.current
    if current.mask is not None:
        _atomic_write(folder / "current_mask.npy", lambda tmp: np.save(tmp, current.mask.detach().cpu().numpy()))
    # Rewriting the .ply costs ~0.1 s per 10k Gaussians: only when the current scene changed (not on mask clicks).
    ply = folder / "current.ply"
    if not ply.exists() or previous.get("current_scene") != meta["current_scene"]:
        _export_ply(current.scene, ply)
    return folder


def _read_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / META_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _export_ply(scene: GaussianScene, path: Path) -> None:
    """The current scene as .ply when engine.io can write one (absent in partial checkouts)."""
    try:
        from ..io import save as save_scene
    except ImportError:
        return
    _atomic_write(path, lambda tmp: save_scene(scene, tmp))


def has_autosave(workspace: str | os.PathLike) -> bool:
    return (Path(workspace) / META_NAME).is_file()


def describe_autosave(workspace: str | os.PathLike) -> dict | None:
    """The saved metadata (labels, cursor, time) without loading tensors; None when there is none."""
    path = Path(workspace) / META_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def restore(workspace: str | os.PathLike, device: torch.device | str = "cpu") -> History:
    """Load the history autosaved in `workspace` (exact parameters, labels, cursor)."""
    folder = Path(workspace)
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        raise FileNotFoundError(f"no autosave in {folder} ({META_NAME} is missing)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path} is not valid JSON: {exc}") from exc
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{meta_path} has autosave version {meta.get('version')}, expected {FORMAT_VERSION}")
    token = str(meta.get("token", ""))
    scenes: dict[int, GaussianScene] = {}
    part_sets: dict[int, tuple] = {}
    legacy_up: tuple[Up, str] | None = None  # read once, for states saved without an up
    states = []
    for entry in meta.get("states", []):
        sid = int(entry["scene"])
        if sid not in scenes:
            scenes[sid] = GaussianScene(**_load(folder / f"scene_{token}_{sid}.pt", device))
        mask = _load(folder / f"mask_{token}_{int(entry['id'])}.pt", device)["mask"]
        pid = entry.get("parts")
        if pid is not None and int(pid) not in part_sets:
            saved = _load(folder / f"parts_{token}_{int(pid)}.pt", "cpu")
            part_sets[int(pid)] = tuple(zip(saved["names"], saved["weights"]))
        if "up" in entry:
            up, up_source = normalize_up(entry["up"]), str(entry.get("up_source", "file"))
        else:
            legacy_up = legacy_up or _legacy_up(folder)
            up, up_source = legacy_up
        states.append(State(scene=scenes[sid], mask=mask, label=str(entry["label"]), id=int(entry["id"]),
                            parts=part_sets.get(int(pid), ()) if pid is not None else (),
                            name=str(entry.get("name", "")), up=up, up_source=up_source))
    if not states:
        raise ValueError(f"{meta_path} lists no states")
    cursor = int(meta["cursor"])
    if not 0 <= cursor < len(states):
        raise ValueError(f"{meta_path} has cursor {cursor} outside its {len(states)} states")
    return History.from_states(states, cursor, int(meta.get("max_states", 50)), token)


def _load(path: Path, device) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"autosave file {path} is missing")
    return torch.load(path, map_location=device, weights_only=True)


def _legacy_up(folder: Path) -> tuple[Up, str]:
    """(up, source) from an older autosave's up.json sidecar; +z "default" when there is none (or it is
    unreadable). A source the history does not know is taken as the file's ("file", the sidecar's default)."""
    try:
        saved = json.loads((folder / LEGACY_UP_NAME).read_text())
        up = normalize_up(saved["up"])
    except (OSError, ValueError, KeyError, TypeError):
        return Z_UP, "default"
    source = saved.get("source", "file")
    return up, source if source in UP_SOURCES else "file"
