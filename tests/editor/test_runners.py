"""One job seam: the local worker and a ZeroGPU call run an edit through the same engine.worker.run.run_job, so
the same tiny closed-form edit reports the same progress records and previews, and ends with the same scene,
whichever runs it. And in Space mode mask tasks run on the engine worker with the GPU calls' own model copy."""

from __future__ import annotations

import queue

import numpy as np
import torch

from editor.runners import gpu_calls
from editor.runners.gpu_calls import GpuResult, GpuStarted
from engine.camera import orbit_cameras
from engine.edit import EditConfig
from engine.optimize import DensifyConfig
from engine.worker import EngineWorker, PreviewEvent, ProgressEvent
from engine.worker import EditJob, Progress
from tests.editor.apphelpers import small_scene


def _job() -> EditJob:
    scene = small_scene(80)
    mask = torch.zeros(80)
    mask[:30] = 1.0
    config = EditConfig(prompt="red", model="closed-form:#d02020", steps=6, resolution=32, preview_every=2,
                        seed=3, densify=DensifyConfig(enabled=False))
    cameras = orbit_cameras(torch.zeros(3), 1.5, [30.0], [20.0], width=64, height=64)
    return EditJob(scene, mask, config, cameras)


def _local(job: EditJob):
    worker = EngineWorker(device="cpu")
    try:
        events: queue.Queue = worker.events("s")
        worker.load_scene("s", job.scene).result(60)
        worker.set_mask("s", job.mask).result(60)
        result = worker.start_edit("s", job.config, preview_cameras=job.preview_cameras).result(300)
    finally:
        worker.shutdown()
    seen = []
    while not events.empty():
        seen.append(events.get())
    steps = [(e.step, e.total, e.losses, e.num_gaussians) for e in seen if isinstance(e, ProgressEvent)]
    previews = {e.step: e.image for e in seen if isinstance(e, PreviewEvent)}
    return steps, previews, result.scene


def test_the_local_worker_and_a_gpu_call_report_the_same_records_for_one_edit():
    job = _job()
    local_steps, local_previews, local_scene = _local(job)

    records = list(gpu_calls.run_edit_on_gpu(job, None))
    assert isinstance(records[0], GpuStarted) and isinstance(records[-1], GpuResult)
    progress = [r for r in records if isinstance(r, Progress)]
    gpu_steps = [(r.step, r.total, r.losses, r.num_gaussians) for r in progress]
    gpu_previews = {r.step: r.preview for r in progress if r.preview is not None}

    assert gpu_steps == local_steps and len(gpu_steps) == job.config.steps
    assert sorted(gpu_previews) == sorted(local_previews) == [2, 4, 6]
    for step, image in gpu_previews.items():  # both drawn from the session's view, not the edit's own orbit
        assert image.shape == (64, 64, 3) and np.array_equal(image, local_previews[step])
    gpu_scene = records[-1].scene
    for name, value in local_scene.items():
        assert torch.equal(getattr(gpu_scene, name), value), name


def test_space_mode_mask_tasks_use_the_gpu_calls_model_copy(tmp_path, monkeypatch):
    """Space mode: the engine worker (where SAM clicks and text selection run) loads models through the GPU
    calls' cache, so the editing model is in memory once per process."""
    from editor.config import AppConfig
    from editor.page import connect
    from editor.scenes import SceneBundle
    from editor.session import SessionRegistry

    monkeypatch.setattr(gpu_calls, "_MODELS", {})
    config = AppConfig(workspace=tmp_path, space=True, model="closed-form:#00ff00")
    registry = SessionRegistry(lambda: SceneBundle(small_scene(40), "small"), tmp_path)
    ctx = connect(config, registry)
    try:
        registry.get("s")
        seen = ctx.link.worker.start_task("s", "probe", lambda progress, should_stop, model: model,
                                          model="closed-form:#00ff00").result(60)
        (cache,) = gpu_calls._MODELS.values()
        assert seen is cache.get("closed-form:#00ff00")
    finally:
        registry.close_all()
        ctx.link.worker.shutdown(timeout=10)
