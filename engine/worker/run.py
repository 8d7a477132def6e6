"""One way to run a job, wherever it runs: a picklable job description and `run_job`, an iterator of progress
records that ends with the job's result.

    for record in run_job(EditJob(scene, mask, config, preview_cameras), model, should_stop=...):
        ...  # a Progress after every step (engine.optimize.progress), then the EditResult (or a GenerateResult)

Both runners drive it: the engine worker on its thread (engine/worker/jobs.py turns the records into events and
the result into a history entry) and a ZeroGPU call in its forked process (editor/runners/gpu_calls.py yields the
records back to the app). So an edit's steps, losses and previews are the same records either way, and the
preview of an edit is drawn from the session's view (`preview_cameras`) on both paths.

The iterator runs the job on the caller's thread, one step per `next()`; closing it (a ZeroGPU stream closed by
the app) stops the job before its next step. Everything in a job description and a record is plain data — CPU
tensors, numpy images, dataclasses — so it crosses a process boundary as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
from torch import Tensor

from ..camera import Cameras
from ..edit import EditConfig, EditResult, iter_edit
from ..generate import GenerateConfig, initial_scene, iter_generate
from ..optimize.progress import Progress
from ..scene import GaussianScene
from ..up import normalize_up
from .events import GenerateResult

PREVIEW_BACKGROUND = (1.0, 1.0, 1.0)  # previews from the session's view: the page's own background


@dataclass(frozen=True)
class EditJob:
    """Edit the masked part of `scene` with `config`."""

    scene: GaussianScene
    mask: Tensor  # [N] weights in [0, 1]
    config: EditConfig
    preview_cameras: Cameras | None = None  # one camera (the session's view): previews drawn from it, else the edit's own

    @property
    def model(self) -> str:
        return self.config.model


@dataclass(frozen=True)
class GenerateJob:
    """Generate `config.prompt`, starting from `initial` (None: `config.init`)."""

    config: GenerateConfig
    initial: GaussianScene | None = None
    preview_angles: tuple[float, float] | None = None  # (azimuth, elevation): the user's view, else a fixed one

    @property
    def model(self) -> str:
        return self.config.model


Job = EditJob | GenerateJob


def run_job(job: Job, model, *, should_stop: Callable[[], bool] | None = None,
            loss_fn=None) -> Iterator[Progress | EditResult | GenerateResult]:
    """Progress after every step, then the result: an EditResult (cancelled: the input, untouched) or a
    GenerateResult (cancelled: the scene so far, `cancelled` set). Bad input raises ValueError at the first
    `next()`, before any step."""
    if isinstance(job, EditJob):
        yield from _edit(job, model, should_stop, loss_fn)
    elif isinstance(job, GenerateJob):
        yield from _generate(job, model, should_stop, loss_fn)
    else:
        raise TypeError(f"not a job: {type(job).__name__}")


def _edit(job: EditJob, model, should_stop, loss_fn) -> Iterator[Progress | EditResult]:
    for item in iter_edit(job.scene, job.mask, job.config, model, should_stop=should_stop, loss_fn=loss_fn):
        if isinstance(item, EditResult):
            yield item
            return
        if item.preview is not None and job.preview_cameras is not None and item.scene is not None:
            item = replace(item, preview=_draw(item.scene, job.preview_cameras))
        yield item


def _generate(job: GenerateJob, model, should_stop, loss_fn) -> Iterator[Progress | GenerateResult]:
    config, steps = job.config, 0
    start = job.initial if job.initial is not None else initial_scene(config)
    for item in iter_generate(config, model, should_stop=should_stop, initial=start, loss_fn=loss_fn,
                              preview_angles=job.preview_angles):
        if isinstance(item, GaussianScene):  # iter_generate ends early only when should_stop said so
            yield GenerateResult(scene=item, steps_done=steps, cancelled=steps < config.steps,
                                 up=normalize_up(config.up))
            return
        steps = item.step
        yield item


def _draw(scene: GaussianScene, cameras: Cameras) -> np.ndarray:
    """[H, W, 3] uint8: `scene` from the first camera, on the page's background."""
    from ..render.images import picture

    return picture(scene.to(cameras.viewmats.device), cameras, background=PREVIEW_BACKGROUND)
