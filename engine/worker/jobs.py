"""What the worker runs for jobs (edits, generations), tasks (mask work) and the warm-up, on its thread.

Every job has one shape, `Jobs._run_job`:

1. cancelled while queued: end as "cancelled before start";
2. refuse bad input before its model loads (`prepare`);
3. its model, or set the job aside while the model loads (`ModelCache.get_or_park` raises `Parked`);
4. run it: `engine.worker.run.run_job`, the same iterator a ZeroGPU call drives, with pause/cancel and other
   sessions' commands between its steps, and its progress records (and previews) as events;
5. adopt the result as a history entry after the state it started from (History.push_result) — unless the
   session was closed or opened another scene meanwhile.
"""

from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

import torch

from ..camera import Cameras
from ..edit import EditConfig, EditResult
from ..generate import GenerateConfig, check_generate_config, initial_scene
from ..optimize.progress import Progress
from ..scene import GaussianScene
from .bus import EventBus
from .events import DoneEvent, GenerateResult, PreviewEvent, ProgressEvent, TaskCancelled, TaskEvent
from .history import History
from .models import ModelCache
from .queue import Command, CommandQueue
from .run import EditJob, GenerateJob, Job, run_job
from .sessions import SessionStore

R = TypeVar("R")  # a job's result: it has `cancelled` and `steps_done`
ShouldStop = Callable[[], bool]
OnProgress = Callable[[Progress], None]


class Jobs:
    """The bodies of the worker's long commands; see the module docstring."""

    def __init__(self, queue: CommandQueue, models: ModelCache, sessions: SessionStore, bus: EventBus,
                 execute: Callable[[Command], None]) -> None:
        """execute(command): how the worker runs a command (used to serve other sessions between steps)."""
        self._queue = queue
        self._models = models
        self._sessions = sessions
        self._bus = bus
        self._execute = execute
        self.warming = False  # a warm-up is running

    # ------------------------------------------------------------------ jobs
    def edit(self, cmd: Command, config: EditConfig, loss_fn=None, preview_cameras: Cameras | None = None
             ) -> EditResult:
        history = self._sessions.get(cmd.session)
        state = history.current

        def prepare() -> Job:
            if state.mask is None:
                raise ValueError("nothing is selected; mask the part to edit before starting an edit")
            return EditJob(state.scene, state.mask, config, preview_cameras)

        def adopt(result: EditResult, history: History) -> str:
            # the named parts follow the edit's rows: children of a part's Gaussians stay in it, pruned ones leave
            note = history.push_result(state.id, f"edit ({config.method}): {config.prompt}", result.scene,
                                       result.mask, row_sources=result.row_sources, owned=True)  # made by the job
            return " · ".join(filter(None, (f"{result.steps_done} steps", note)))

        return self._run_job(cmd, config.model, history, prepare=prepare, adopt=adopt, loss_fn=loss_fn,
                             not_started=lambda: EditResult(scene=state.scene, mask=state.mask, cancelled=True,
                                                            row_sources=torch.arange(len(state.scene))))

    def generate(self, cmd: Command, config: GenerateConfig, from_current: bool, name: str | None = None,
                 preview_angles: tuple[float, float] | None = None) -> GenerateResult:
        history = self._sessions.find(cmd.session)
        begun = history.current if history is not None else None  # the state the result will follow

        def prepare() -> Job:  # the starting scene is made here, so a bad config is refused before the model loads
            check_generate_config(config)
            start = self._sessions.get(cmd.session).current.scene if from_current else initial_scene(config)
            return GenerateJob(config, start, preview_angles)

        def adopt(result: GenerateResult, history: History | None) -> str:
            label = f"generate ({config.method}): {config.prompt}"
            zeros = torch.zeros(len(result.scene), dtype=torch.float32)
            note = ""
            if history is None:  # no scene before: the result starts the session's history
                self._sessions.open(cmd.session, History(result.scene, zeros, label=label, name=name or "",
                                                         up=result.up, up_source="generated"))
            else:  # a new object has none of the replaced one's parts; refining the current one keeps them
                note = history.push_result(begun.id, label, result.scene, zeros, parts="keep" if from_current else (),
                                           name=name, up=result.up, up_source="generated")
            return " · ".join(filter(None, (f"{result.steps_done} steps, {len(result.scene)} Gaussians", note)))

        current = history.current.scene if history is not None else None
        return self._run_job(cmd, config.model, history, prepare=prepare, adopt=adopt,
                             not_started=lambda: GenerateResult(scene=current, steps_done=0, cancelled=True))

    def _run_job(self, cmd: Command, spec: str | None, history: History | None, *,
                 prepare: Callable[[], Job], adopt: Callable[[R, History | None], str],
                 not_started: Callable[[], R], loss_fn=None) -> R:
        """The steps of the module docstring. `history`: the session's when the job started (None: it has
        none yet); `prepare()` checks the input and returns the job description (made afresh when a job parked
        on its model runs); `adopt(result, history)` records a finished result there and returns the Done
        message."""
        if cmd.control.cancel.is_set():  # cancelled while queued
            self._done(cmd, cancelled=True, message="cancelled before start")
            return not_started()
        job = prepare()
        model = self._models.get_or_park(spec)  # Parked: the worker sets the job aside until the model loads
        with self._queue.running(cmd):
            self._sessions.announce(cmd.session)
            should_stop, on_progress = self._hooks(cmd)
            for record in run_job(job, model, should_stop=should_stop, loss_fn=loss_fn):
                if isinstance(record, Progress):
                    on_progress(record)
                else:
                    result = record
        if result.cancelled:
            self._done(cmd, cancelled=True, message=f"cancelled after {result.steps_done} steps")
            self._sessions.announce(cmd.session)
            return result
        # The session may have been closed or reloaded while the job ran: then the result has nowhere to go.
        # Moves within its history (undo, redo, new entries) do not lose it: History.push_result says where
        # it went.
        if self._sessions.find(cmd.session) is history:
            message = adopt(result, history)
            self._sessions.changed(cmd.session)
        else:
            message = "finished, but the session changed meanwhile; result discarded"
        self._done(cmd, message=message)
        return result

    def _hooks(self, cmd: Command) -> tuple[ShouldStop, OnProgress]:
        """(should_stop, on_progress) for a job: the pause/cancel flags and other sessions' commands between
        steps, and the job's progress and previews as events."""

        def should_stop() -> bool:
            return self._queue.between_steps(cmd, self._execute)

        def on_progress(record: Progress) -> None:
            self._bus.emit(ProgressEvent(cmd.session, cmd.id, record.step, record.total, dict(record.losses),
                                         record.elapsed_s, record.eta_s, record.num_gaussians))
            self._queue.note_eta(cmd, record.eta_s)  # what a session queued behind this job is told
            if record.preview is not None:
                self._bus.emit(PreviewEvent(cmd.session, cmd.id, record.step, record.preview, record.scene,
                                            record.mask))

        return should_stop, on_progress

    def _done(self, cmd: Command, *, cancelled: bool = False, message: str = "") -> None:
        self._bus.emit(DoneEvent(cmd.session, cmd.id, cmd.action, cancelled=cancelled, message=message))

    # ------------------------------------------------------------------ tasks and the warm-up
    def task(self, cmd: Command, fn: Callable[..., Any], model_spec: str | None = None) -> Any:
        """Run `fn(progress, should_stop[, model])`; None when cancelled (before or during)."""
        control = cmd.control

        def progress(step: int, total: int, message: str = "") -> None:
            if control.cancel.is_set():
                raise TaskCancelled()
            self._bus.emit(TaskEvent(cmd.session, cmd.id, cmd.action, int(step), int(total), message))

        if control.cancel.is_set():
            self._done(cmd, cancelled=True, message="cancelled before start")
            return None
        args = () if model_spec is None else (self._models.get_or_park(model_spec),)  # may set the task aside
        try:
            result = fn(progress, control.cancel.is_set, *args)
        except TaskCancelled:
            self._done(cmd, cancelled=True, message="cancelled")
            return None
        self._done(cmd)
        return result

    def warm_up(self, cmd: Command) -> float:
        """Render a small scene forward and backward once (compiles the CPU rasterizer's kernels) and take an
        optimizer step (torch's first optimizer imports torch._dynamo: ~2 CPU s an edit's first step would
        wait for) and a part-cover render (the edit's view choice); seconds."""
        from ..camera import orbit_cameras
        from ..optimize.adam import make_optimizer
        from ..render import render
        from ..render.part_cover import part_cover
        from ..scene import random_scene

        start = time.perf_counter()
        self.warming = True
        try:
            scene = random_scene(64, seed=0, extent=0.3)
            params = {k: v.clone().requires_grad_(True) for k, v in scene.items()}
            cams = orbit_cameras(torch.zeros(3), 2.0, [0.0], [20.0], width=32, height=32)
            out = render(GaussianScene(**params), cams)
            out.rgb.sum().backward()
            make_optimizer(params, dict.fromkeys(params, 1e-3)).step()
            part_cover(scene, torch.arange(len(scene)) < 8, cams)  # the kernels an edit's view choice runs
        finally:
            self.warming = False
        return time.perf_counter() - start
