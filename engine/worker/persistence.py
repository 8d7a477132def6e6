"""Crash-safe autosave of a session's History to a workspace folder, and its restore.

Layout (one folder per session):

    workspace/
      history.json        token, labels, cursor, per state its ids, name and up, and how each scene is stored —
                          written last, atomically: the commit point
      scene_<token>_<id>.pt  a whole scene {name: tensor}: the first one, and any that shares nothing with the one
                          before it (mask changes share their scene)
      delta_<token>_<id>.pt  every other scene as what changed from the scene before it (deltas.forward_delta:
                          the changed rows, and row links when the count changed); restored by applying the
                          chain of deltas to its whole scene (history.json "scenes": id -> parent id or null)
      mask_<token>_<id>.pt   each state's mask weights {"mask": tensor or None}, or for a selection of few rows
                          {"count": N, "rows": [k] int32, "values": [k]} (a part of a capture: 8 bytes a row)
      parts_<token>_<id>.pt  each distinct set of named parts {name: weights [N]} (states that keep them share one)
      current.ply         the current scene for any viewer (when engine.io can write .ply), only for scenes of
                          up to PLY_MAX_GAUSSIANS (a real capture's .ply is hundreds of MB per edit)
      current_mask.npy    the current mask weights (also only up to PLY_MAX_GAUSSIANS)

Why deltas: a real capture is 100-1,500 MB; an edit changes the rows of one part. A save writes what the
history itself keeps of a step (the changed rows), so an edit of a 13k-row part of a 1.25M-row scene writes
~3 MB, not the ~290 MB scene. States dropped from the front of the history keep their files while a later
scene's chain needs them; once those outgrow a whole scene, the oldest kept scene is written whole again.

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
from .deltas import apply_delta, forward_delta
from .history import UP_SOURCES, History, State

FORMAT_VERSION = 1
META_NAME = "history.json"
LEGACY_UP_NAME = "up.json"  # the editor's up sidecar of older autosaves (read on restore, never written)
PLY_MAX_GAUSSIANS = 250_000  # current.ply is kept up to date only for scenes up to this size


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
    action: only new states are written (a new scene as its changed rows), and the metadata file is replaced
    last."""
    folder = Path(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    previous = _read_meta(folder)
    states = history.records()  # no scenes: a scene is rebuilt (history.scene_at) only when its file is missing
    scene_ids = _scene_ids(history)
    parts_ids = _parts_ids(history)
    for state, pid in zip(states, parts_ids):
        parts_path = folder / f"parts_{history.token}_{pid}.pt"
        if state.parts and not parts_path.exists():
            names, weights = [n for n, _ in state.parts], [w for _, w in state.parts]
            _atomic_write(parts_path, lambda tmp, n=names, w=weights: torch.save({"names": n, "weights": w}, tmp))
    parents = _stored_scenes(previous, history.token, folder)  # sid -> parent sid (None: whole), files present
    if scene_ids[0] in parents and _dead_chain_bytes(folder, history.token, parents, scene_ids) > \
            _file_bytes(folder / _scene_file(history.token, _chain(parents, scene_ids[0])[0], None)):
        parents.pop(scene_ids[0])  # the dropped states' deltas outgrew a scene: store the oldest one whole again
    for index, (state, sid) in enumerate(zip(states, scene_ids)):
        if sid not in parents:
            parents[sid] = _write_scene(history, index, sid, scene_ids[index - 1] if index else None, folder)
        mask_path = folder / f"mask_{history.token}_{state.id}.pt"
        if not mask_path.exists():
            saved = _packed_mask(state.packed_mask)
            _atomic_write(mask_path, lambda tmp, m=saved: torch.save(m, tmp))
    needed = {s for sid in scene_ids for s in _chain(parents, sid)}
    parents = {sid: parent for sid, parent in parents.items() if sid in needed}
    current_sid = scene_ids[history.cursor]
    meta = {
        "current_scene": f"{history.token}_{current_sid}",
        "version": FORMAT_VERSION,
        "saved_at": time.time(),
        "token": history.token,
        "cursor": history.cursor,
        "max_states": history.max_states,
        "scenes": {str(sid): parent for sid, parent in sorted(parents.items())},
        "states": [
            {"id": s.id, "label": s.label, "scene": sid, "count": s.count, "name": s.name,
             "parts": pid if s.parts else None, "up": list(s.up), "up_source": s.up_source}
            for s, sid, pid in zip(states, scene_ids, parts_ids)
        ],
    }
    _atomic_write(folder / META_NAME, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    # Files no longer referenced (undone-then-overwritten or too old states) can go.
    live = {_scene_file(history.token, sid, parent) for sid, parent in parents.items()}
    live |= {f"mask_{history.token}_{s.id}.pt" for s in states}
    live |= {f"parts_{history.token}_{pid}.pt" for s, pid in zip(states, parts_ids) if s.parts}
    for pattern in ("scene_*.pt", "delta_*.pt", "mask_*.pt", "parts_*.pt"):
        for path in folder.glob(pattern):
            if path.name not in live:
                path.unlink(missing_ok=True)
    # Conveniences for people and viewers; the exact store is above.
    current = history.current
    if len(current.scene) > PLY_MAX_GAUSSIANS:
        (folder / "current_mask.npy").unlink(missing_ok=True)
    elif current.mask is not None:
        _atomic_write(folder / "current_mask.npy", lambda tmp: np.save(tmp, current.mask.detach().cpu().numpy()))
    # Rewriting the .ply costs ~0.1 s per 10k Gaussians: only when the current scene changed (not on mask clicks),
    # and not for real captures (a stale one is removed rather than left behind).
    ply = folder / "current.ply"
    if len(current.scene) > PLY_MAX_GAUSSIANS:
        ply.unlink(missing_ok=True)
    elif not ply.exists() or previous.get("current_scene") != meta["current_scene"]:
        _export_ply(current.scene, ply)
    return folder


def _packed_mask(packed) -> dict:
    """A state's mask as stored: its non-zero rows and weights when it was packed so (history.PackedMask)."""
    if packed.count is None or packed.dense is not None:
        return {"mask": None if packed.dense is None else packed.dense.detach().cpu()}
    return {"count": packed.count, "rows": packed.rows.detach().cpu(), "values": packed.values.detach().cpu()}


def _unpacked_mask(saved: dict):
    if "rows" not in saved:
        return saved["mask"]
    values = saved["values"]
    mask = torch.zeros(int(saved["count"]), dtype=values.dtype, device=values.device)
    mask[saved["rows"].long()] = values
    return mask


def _scene_file(token: str, sid: int, parent: int | None) -> str:
    return f"scene_{token}_{sid}.pt" if parent is None else f"delta_{token}_{sid}.pt"


def _stored_scenes(meta: dict, token: str, folder: Path) -> dict[int, int | None]:
    """The scenes the last save of this history stored, whose files are all still there: sid -> parent sid."""
    if meta.get("token") != token:
        return {}
    parents = {int(sid): (None if parent is None else int(parent)) for sid, parent in meta.get("scenes", {}).items()}
    present = {sid for sid, parent in parents.items() if (folder / _scene_file(token, sid, parent)).exists()}
    return {sid: parent for sid, parent in parents.items()
            if all(s in present for s in _chain(parents, sid, strict=False))}


def _chain(parents: dict[int, int | None], sid: int, *, strict: bool = True) -> list[int]:
    """[whole scene's sid, ..., sid]: the files that rebuild scene `sid`."""
    chain = [sid]
    while parents.get(chain[-1]) is not None:
        chain.append(parents[chain[-1]])
        if len(chain) > len(parents) + 1:
            raise ValueError("the autosave's scene chain loops")
    if strict and chain[-1] not in parents:
        raise KeyError(f"scene {chain[-1]} is not stored")
    return chain[::-1]


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _dead_chain_bytes(folder: Path, token: str, parents: dict[int, int | None], scene_ids: list[int]) -> int:
    """Bytes of the deltas kept only because the first state's scene is rebuilt through them."""
    kept = set(scene_ids)
    return sum(_file_bytes(folder / _scene_file(token, s, parents[s]))
               for s in _chain(parents, scene_ids[0])[1:] if s not in kept)


def _write_scene(history: History, index: int, sid: int, previous_sid: int | None, folder: Path) -> int | None:
    """Store state `index`'s scene: as a delta from the state before it when the history keeps it as one and
    that scene is stored, else whole. Returns its parent sid (None: whole)."""
    record = history.records()[index]
    scene = history.current.scene if index == history.cursor else history.scene_at(index)
    delta = None
    if previous_sid is not None and record.step is not None:
        delta = forward_delta(record.step, scene)
    if delta is None:
        params = {name: t.detach().cpu() for name, t in scene.items()}
        _atomic_write(folder / _scene_file(history.token, sid, None), lambda tmp: torch.save(params, tmp))
        return None
    delta = {"parent": previous_sid, **delta, "values": {k: v.detach().cpu() for k, v in delta["values"].items()}}
    _atomic_write(folder / _scene_file(history.token, sid, previous_sid), lambda tmp: torch.save(delta, tmp))
    return previous_sid


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
    entries = meta.get("states", [])
    if not entries:
        raise ValueError(f"{meta_path} lists no states")
    cursor = int(meta["cursor"])
    if not 0 <= cursor < len(entries):
        raise ValueError(f"{meta_path} has cursor {cursor} outside its {len(entries)} states")
    parents = {int(k): (None if v is None else int(v)) for k, v in meta.get("scenes", {}).items()}
    return History.rebuild(_saved_states(folder, token, entries, parents, device), cursor,
                           int(meta.get("max_states", 50)), token)


def _saved_states(folder: Path, token: str, entries: list[dict], parents: dict[int, int | None], device):
    """(State, row_sources or None) per saved state, in order, each scene rebuilt from the one before it (a
    delta) or read whole: one scene in memory beside the history being rebuilt."""
    part_sets: dict[int, tuple] = {}
    legacy_up: tuple[Up, str] | None = None  # read once, for states saved without an up
    scene, scene_sid = None, None
    for entry in entries:
        sid = int(entry["scene"])
        sources = None
        if sid != scene_sid:
            scene, sources = _read_scene(folder, token, sid, parents, scene, scene_sid, device)
            scene_sid = sid
        mask = _unpacked_mask(_load(folder / f"mask_{token}_{int(entry['id'])}.pt", device))
        pid = entry.get("parts")
        if pid is not None and int(pid) not in part_sets:
            saved = _load(folder / f"parts_{token}_{int(pid)}.pt", "cpu")
            part_sets[int(pid)] = tuple(zip(saved["names"], saved["weights"]))
        if "up" in entry:
            up, up_source = normalize_up(entry["up"]), str(entry.get("up_source", "file"))
        else:
            legacy_up = legacy_up or _legacy_up(folder)
            up, up_source = legacy_up
        yield State(scene=scene, mask=mask, label=str(entry["label"]), id=int(entry["id"]),
                    parts=part_sets.get(int(pid), ()) if pid is not None else (), name=str(entry.get("name", "")),
                    up=up, up_source=up_source), sources


def _read_scene(folder: Path, token: str, sid: int, parents: dict[int, int | None], previous, previous_sid,
                device) -> tuple[GaussianScene, object]:
    """Scene `sid` and, when it is a count-changing delta of `previous`, its row sources [N'] (-1: new rows).
    A delta whose parent is not `previous` (the first state of a history that dropped older ones) is rebuilt
    along its chain from its whole scene."""
    if parents.get(sid) is None:
        return GaussianScene(**_load(folder / _scene_file(token, sid, None), device)), None
    chain = _chain(parents, sid, strict=False)
    if previous is not None and chain[-2] == previous_sid:
        chain = chain[-1:]
        scene = previous
    else:
        scene = GaussianScene(**_load(folder / _scene_file(token, chain[0], None), device))
        chain = chain[1:]
    sources = None
    for step_sid in chain:
        delta = _load(folder / _scene_file(token, step_sid, parents[step_sid]), device)
        scene = apply_delta(scene, delta)
        links = delta.get("after_from_before")
        sources = None if links is None else torch.as_tensor(links).long()
    return scene, sources if len(chain) == 1 else None


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
