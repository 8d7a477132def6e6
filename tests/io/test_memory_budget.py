"""A scene that would not fit in memory is refused before its body is read, with a message saying so."""

from __future__ import annotations

import pytest

import engine.io.memory_budget as budget
from engine.io import FormatError, load, save
from engine.scene import random_scene


def test_declared_size_of_a_ply_and_a_splat(tmp_path):
    scene = random_scene(50, sh_degree=3, seed=0)
    save(scene, tmp_path / "s.ply")
    save(scene, tmp_path / "s.splat")
    assert budget.declared_scene_bytes(tmp_path / "s.ply", "ply") == 50 * 4 * (14 + 45)
    assert budget.declared_scene_bytes(tmp_path / "s.splat", "splat") == 50 * 4 * 14


def test_load_refuses_a_scene_larger_than_the_memory_available(tmp_path, monkeypatch):
    path = tmp_path / "s.ply"
    save(random_scene(200, sh_degree=3, seed=1), path)
    monkeypatch.setattr(budget, "available_memory", lambda: budget.RESERVE_BYTES + 1000)
    read = []
    import engine.io.ply as ply_module

    monkeypatch.setattr(ply_module, "_read_binary", lambda *a: read.append(a))
    with pytest.raises(FormatError, match=r"needs about 0\.00 GB of memory to load, but only 0\.00 GB"):
        load(path)
    assert not read  # refused before the body was read
    monkeypatch.undo()
    monkeypatch.setattr(budget, "available_memory", lambda: budget.RESERVE_BYTES + 200 * 4 * 59)
    assert len(load(path)) == 200  # exactly enough is enough


def test_unknown_memory_refuses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "s.ply"
    save(random_scene(20, seed=2), path)
    monkeypatch.setattr(budget, "available_memory", lambda: None)
    assert len(load(path)) == 20
