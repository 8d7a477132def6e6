"""Autosave survives a crash and restores the same history (parameters, labels, cursor, parts, name, up)."""

import json
import os

import pytest
import torch

from engine.scene import random_scene
from engine.worker.persistence import autosave, describe_autosave, has_autosave, restore
from engine.worker.history import History


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for (_, x), (_, y) in zip(a.items(), b.items()))


def _edited(scene, seed):
    g = torch.Generator().manual_seed(seed)
    return scene.replace(sh0=scene.sh0 + torch.randn(scene.sh0.shape, generator=g))


def test_autosave_restore_is_exact_including_cursor(tmp_path):
    s0 = random_scene(30, sh_degree=2, seed=6)
    h = History(s0)
    h.push("mask", mask=torch.rand(30))
    h.push("edit", scene=_edited(s0, 7))
    h.push("edit 2", scene=_edited(s0, 8))
    h.undo()
    autosave(h, tmp_path / "ws")
    assert has_autosave(tmp_path / "ws")
    assert describe_autosave(tmp_path / "ws")["cursor"] == 2
    r = restore(tmp_path / "ws")
    assert r.labels() == h.labels() and r.cursor == h.cursor
    for a, b in zip(h.states(), r.states()):
        assert _equal(a.scene, b.scene)
        assert (a.mask is None and b.mask is None) or torch.equal(a.mask, b.mask)
    states = r.states()  # (each call rebuilds the scenes that are not current: the history stores changes)
    assert states[0].scene is states[1].scene  # the mask change still shares its scene
    assert _equal(r.redo().scene, h.states()[3].scene)


def test_autosave_writes_only_new_files_and_removes_stale_ones(tmp_path):
    s0 = random_scene(10, seed=9)
    h = History(s0)
    h.push("edit", scene=_edited(s0, 1))
    autosave(h, tmp_path)
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")}
    h.undo()
    h.push("edit b", scene=_edited(s0, 2))  # drops "edit"
    autosave(h, tmp_path)
    now = {p.name for p in tmp_path.glob("*.pt")}
    assert len(now) == 4  # two scenes, two masks
    kept = [n for n in first if n in now]
    assert kept and all((tmp_path / n).stat().st_mtime_ns == first[n] for n in kept)
    assert _equal(restore(tmp_path).current.scene, _edited(s0, 2))


def test_crash_during_autosave_keeps_previous_save(tmp_path, monkeypatch):
    s0 = random_scene(10, seed=10)
    h = History(s0)
    autosave(h, tmp_path)
    h.push("edit", scene=_edited(s0, 3))

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(os, "replace", crash)  # every atomic rename fails: the save dies midway
    with pytest.raises(RuntimeError):
        autosave(h, tmp_path)
    monkeypatch.undo()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    r = restore(tmp_path)
    assert r.labels() == ["load scene"] and _equal(r.current.scene, s0)


def test_a_new_history_never_reuses_another_ones_files(tmp_path):
    autosave(History(random_scene(10, seed=11)), tmp_path)
    other = random_scene(12, seed=12)
    autosave(History(other), tmp_path)
    assert _equal(restore(tmp_path).current.scene, other)


def test_restore_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no autosave"):
        restore(tmp_path)
    autosave(History(random_scene(5, seed=13)), tmp_path)
    meta = json.loads((tmp_path / "history.json").read_text())
    for p in tmp_path.glob("scene_*.pt"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="scene_"):
        restore(tmp_path)
    (tmp_path / "history.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        restore(tmp_path)
    meta["version"] = 99
    (tmp_path / "history.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version 99"):
        restore(tmp_path)


def test_autosave_rewrites_current_ply_only_when_the_scene_changes(tmp_path, monkeypatch):
    import engine.worker.persistence as persistence

    exported = []
    real_export = persistence._export_ply
    monkeypatch.setattr(persistence, "_export_ply", lambda scene, path: (exported.append(len(scene)), real_export(scene, path)))
    s0 = random_scene(30, seed=4)
    h = History(s0)
    autosave(h, tmp_path)
    assert exported == [30] and (tmp_path / "current.ply").is_file()
    h.push("mask", mask=torch.rand(30))
    autosave(h, tmp_path)
    assert exported == [30]  # a mask click does not rewrite the scene file
    h.push("edit", scene=_edited(s0, 5))
    autosave(h, tmp_path)
    h.undo()
    autosave(h, tmp_path)
    assert exported == [30, 30, 30]  # the edit and its undo each change the current scene


def test_up_survives_autosave_and_restore_per_state(tmp_path):
    s0 = random_scene(8, seed=14)
    h = History(s0, up=(0.0, -1.0, 0.0), up_source="format")
    h.push("up axis +x", up=(1, 0, 0), up_source="user")
    autosave(h, tmp_path)
    r = restore(tmp_path)
    assert r.current.up == (1.0, 0.0, 0.0) and r.current.up_source == "user"
    r.undo()
    assert r.current.up == (0.0, -1.0, 0.0) and r.current.up_source == "format"


def _without_up(folder):
    """Make the autosave in `folder` look like one written before the history held the up axis."""
    meta = json.loads((folder / "history.json").read_text())
    for entry in meta["states"]:
        del entry["up"], entry["up_source"]
    (folder / "history.json").write_text(json.dumps(meta))


def test_an_older_autosave_takes_its_up_from_the_editors_sidecar_else_plus_z(tmp_path):
    h = History(random_scene(8, seed=15), up=(0.0, 1.0, 0.0), up_source="user")
    h.push("mask", mask=torch.ones(8))
    with_sidecar, without = tmp_path / "a", tmp_path / "b"
    for folder in (with_sidecar, without):
        autosave(h, folder)
        _without_up(folder)
    (with_sidecar / "up.json").write_text(json.dumps({"up": [0, -2, 0], "source": "geometry"}))
    r = restore(with_sidecar)
    assert [(s.up, s.up_source) for s in r.states()] == [((0.0, -1.0, 0.0), "geometry")] * 2
    assert restore(without).current.up == (0.0, 0.0, 1.0) and restore(without).current.up_source == "default"
    (with_sidecar / "up.json").write_text("{broken")
    assert restore(with_sidecar).current.up_source == "default"


def _files(folder, pattern):
    return {p.name: p.stat().st_size for p in folder.glob(pattern)}


def test_an_edit_is_saved_as_its_changed_rows_and_restores_bit_for_bit(tmp_path):
    s0 = random_scene(3000, sh_degree=3, seed=20)
    h = History(s0)
    autosave(h, tmp_path)
    whole = _files(tmp_path, "scene_*.pt")
    sh0 = s0.sh0.clone()
    sh0[100:130] += 0.25  # an edit of 30 rows
    h.push("edit", scene=s0.replace(sh0=sh0), mask=torch.rand(3000))
    autosave(h, tmp_path)
    assert _files(tmp_path, "scene_*.pt") == whole  # no second whole scene
    (delta,) = _files(tmp_path, "delta_*.pt").values()
    assert delta < 0.05 * next(iter(whole.values()))
    h.push("select", mask=(torch.arange(3000) < 40).float() * 0.5)  # a small selection: stored as its rows
    autosave(h, tmp_path)
    mask_file = tmp_path / f"mask_{h.token}_{h.current.id}.pt"
    assert mask_file.stat().st_size < 3000 * 4 / 2  # dense: 4 bytes a row
    r = restore(tmp_path)
    assert r.labels() == h.labels()
    for a, b in zip(h.states(), r.states()):
        assert _equal(a.scene, b.scene)
        assert (a.mask is None and b.mask is None) or torch.equal(a.mask, b.mask)


def test_a_count_changing_edit_restores_its_scene_parts_name_and_up(tmp_path):
    s0 = random_scene(200, seed=21)
    parts = {"head": (torch.arange(200) < 50).float()}
    h = History(s0, parts=parts, name="robot", up=(0.0, -1.0, 0.0), up_source="format")
    mask = (torch.arange(200) < 50).float()
    h.push("select", mask=mask)
    sources = torch.cat([torch.arange(200)[torch.arange(200) != 7], torch.arange(10, 20), torch.tensor([-1])])
    edited = s0.subset(sources.clamp(min=0))
    edited = edited.replace(means=edited.means + 0.01 * (torch.arange(len(sources)) >= 199)[:, None])
    h.push("densify", scene=edited, mask=torch.ones(len(sources)), row_sources=sources, name="robot 2")
    autosave(h, tmp_path)
    assert len(_files(tmp_path, "delta_*.pt")) == 1
    r = restore(tmp_path)
    for a, b in zip(h.states(), r.states()):
        assert _equal(a.scene, b.scene)
        assert (a.mask is None and b.mask is None) or torch.equal(a.mask, b.mask)
        assert [n for n, _ in a.parts] == [n for n, _ in b.parts]
        assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.parts, b.parts))
        assert (a.name, a.up, a.up_source) == (b.name, b.up, b.up_source)
    r.undo()
    assert _equal(r.current.scene, s0)


def test_dropped_states_keep_the_chain_until_it_outgrows_a_whole_scene(tmp_path):
    s0 = random_scene(400, sh_degree=1, seed=22)
    h = History(s0, max_states=3)
    current = s0
    rewrites = 0
    names = set(_files(tmp_path, "scene_*.pt"))
    for i in range(12):
        sh0 = current.sh0.clone()
        sh0[i * 30:(i + 1) * 30] += 0.1  # 30 of 400 rows a step: a scene's worth of deltas every ~13 steps
        current = current.replace(sh0=sh0)
        h.push(f"edit {i}", scene=current)
        autosave(h, tmp_path)
        now = set(_files(tmp_path, "scene_*.pt"))
        rewrites += now != names
        names = now
        r = restore(tmp_path)
        assert r.labels() == h.labels() and _equal(r.current.scene, current)
        assert all(_equal(a.scene, b.scene) for a, b in zip(h.states(), r.states()))
    assert 1 <= rewrites <= 4  # the oldest kept scene is written whole again now and then, not every step
    assert len(_files(tmp_path, "delta_*.pt")) <= 2 + 400 // 30


def test_current_ply_is_left_out_for_large_scenes(tmp_path, monkeypatch):
    import engine.worker.persistence as persistence

    h = History(random_scene(30, seed=23))
    autosave(h, tmp_path)
    assert (tmp_path / "current.ply").is_file()
    monkeypatch.setattr(persistence, "PLY_MAX_GAUSSIANS", 20)
    h.push("edit", scene=_edited(h.current.scene, 24))
    autosave(h, tmp_path)
    assert not (tmp_path / "current.ply").exists()  # not a stale one either
