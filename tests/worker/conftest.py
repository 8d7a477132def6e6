"""Fixtures of the worker's tests: a two-part scene with its first part masked, and a worker on weight-free
priors with an autosave workspace."""

from __future__ import annotations

import pytest

from engine.worker import EngineWorker
from tests.edit.scenes import two_part_scene
from tests.worker.helpers import loader


@pytest.fixture
def scene_and_mask():
    scene, part_ids, _ = two_part_scene(60)
    return scene, (part_ids == 0).float()


@pytest.fixture
def worker(tmp_path):
    w = EngineWorker(workspace=tmp_path / "ws", model_loader=loader, device="cpu")
    yield w
    w.shutdown()
