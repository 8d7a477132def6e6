"""The engine thread: one worker owns the device and the models and serves every session's commands.

UI threads (one per browser session, the CLI, tests) never touch tensors being optimized. They call the
worker's methods, which enqueue a command and return a `concurrent.futures.Future` at once, and they read
events — through `subscribe(callback)` (called on the worker thread) or `events()` (a thread-safe queue):

    worker = EngineWorker(workspace="~/.splatedit/autosave")
    worker.load_scene("alice", scene)                 # a GaussianScene or a file path
    worker.set_mask("alice", weights)                 # [N] in [0, 1]; a history entry
    job = worker.start_edit("alice", EditConfig(prompt="a red scarf", model="closed-form:red"))
    gen = worker.start_generate("alice", GenerateConfig(prompt="a red apple", model="closed-form:red"))
    worker.cancel("alice")                            # immediate: stops within one step
    worker.undo("alice"); worker.redo("alice"); worker.export("alice", "out.ply")

A generation is a job like an edit (same events, pause/resume/cancel); when it finishes, its scene replaces the
session's scene as one history entry (with an all-zero mask), so undo brings the previous scene back.

Ordering: commands run in the order they were sent (FIFO). An edit (or generation) job occupies the worker until it ends;
between two of its steps the worker also runs the quick commands (anything but an edit) of *other* sessions,
so one session's long edit does not freeze another's mask or undo. A session's own commands wait for its job.
pause / resume / cancel act at once (they are flags read before every step, not queued commands); cancel also
drops that session's queued edits. While a job is paused, the worker keeps serving other sessions' quick
commands, but other edits wait.

Mask work (SAM on many views, lifting to 3D) runs here too, as a *task*: `start_task(session, action, fn)`
runs `fn(progress, should_stop)` on this thread between other sessions' edit steps, reports `TaskEvent`s and
stops at the next `progress(...)` call after `cancel`.

Models load on a loader thread, not on this one: a job whose model is not loaded yet waits aside ("parked",
with a `NoticeEvent` saying so) while the worker keeps running other sessions' commands and jobs; it comes back
to the front of the queue when the load ends, and Cancel ends it at once.

Failures: an exception inside a command or job becomes an `ErrorEvent` (and the future's exception); the
session's scene, mask and history are exactly as before (a job's result is adopted only when it finishes);
the worker keeps serving. A model that cannot be loaded is an error event whose message says what to download.

Each session's state is its `History` (engine/history.py); with a `workspace`, every change is autosaved to
`workspace/<session id>/`, and `restore_session` brings it back after a crash. Models are loaded once per spec
and cached.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .edit import EditConfig, EditEvent, EditResult, as_mask, run_edit
from .generate import GenerateConfig, GenerateEvent, check_generate_config, initial_scene, run_generate
from .history import History, autosave, has_autosave, restore
from .scene import GaussianScene

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class WorkerEvent:
    session: str
    job: int | None  # the command id (Future.command_id) this event belongs to


@dataclass(frozen=True)
class ProgressEvent(WorkerEvent):
    step: int
    total: int
    losses: dict[str, float]
    elapsed_s: float
    eta_s: float
    num_gaussians: int


@dataclass(frozen=True)
class PreviewEvent(WorkerEvent):
    step: int
    image: np.ndarray  # [H, W, 3] uint8
    scene: GaussianScene | None = None  # the scene so far (CPU copy) for viewers that update in place
    mask: Tensor | None = None  # [N'] its mask


@dataclass(frozen=True)
class DoneEvent(WorkerEvent):
    action: str  # what finished: "edit", "generate", "load", "mask", "undo", "redo", "export", "restore"
    cancelled: bool = False
    message: str = ""


@dataclass(frozen=True)
class ErrorEvent(WorkerEvent):
    action: str
    message: str  # one paragraph for the user (a missing model's message includes download instructions)


@dataclass(frozen=True)
class StateEvent(WorkerEvent):
    """A session's state after any change: what the history panel and toolbar show."""

    num_gaussians: int
    has_mask: bool
    labels: tuple[str, ...]
    cursor: int
    can_undo: bool
    can_redo: bool
    busy: bool  # an edit of this session is running or queued
    paused: bool


@dataclass(frozen=True)
class TaskEvent(WorkerEvent):
    """Progress of a task (SAM views segmented, lifting): `step` of `total`, and what is being done."""

    action: str
    step: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class NoticeEvent(WorkerEvent):
    """A job is waiting for something the user should know about (its model loading)."""

    message: str


@dataclass(frozen=True)
class SessionState:
    """A session's current history state, as `current(session)` returns it (references, not copies)."""

    scene: GaussianScene
    mask: Tensor | None
    parts: dict[str, Tensor]  # name -> weights [N], in order
    name: str


class TaskCancelled(Exception):
    """Raised by a task's `progress(...)` once the task is cancelled; the worker ends the task quietly."""


@dataclass(frozen=True)
class GenerateResult:
    """What a generation job's future resolves to."""

    scene: GaussianScene | None  # the generated scene (cancelled: the scene so far, not adopted; None: never ran)
    steps_done: int
    cancelled: bool = False


# ---------------------------------------------------------------------------------------------- internals


@dataclass
class _Control:
    """Flags an edit reads before every step; set from any thread."""

    cancel: threading.Event = field(default_factory=threading.Event)
    unpaused: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.unpaused.set()


@dataclass
class _Command:
    id: int
    session: str
    action: str
    run: Callable[["_Command"], Any]
    future: Future
    is_edit: bool = False
    control: _Control | None = None
    parked_on: str | None = None  # the model spec this job waits for (loading on the loader thread)


class _Parked(Exception):
    """A job's model is loading: set the job aside until it is loaded."""

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.spec = spec


@dataclass
class _Session:
    id: str
    history: History


class EngineWorker:
    """One thread that owns the device and the models; see the module docstring."""

    def __init__(
        self,
        *,
        workspace: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        model_loader: Callable[..., Any] | None = None,
        name: str = "engine",
    ) -> None:
        """workspace: autosave folder (one subfolder per session), None for no autosave. device: where models
        run (default: CUDA when available). model_loader(spec, device=...): engine.guidance.load_guidance by
        default; tests pass their own."""
        self.workspace = Path(workspace).expanduser() if workspace is not None else None
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self._loader = model_loader
        self._models: dict[str, Any] = {}
        self._loading: dict[str, threading.Thread] = {}  # spec -> its loader thread
        self._load_errors: dict[str, BaseException] = {}  # spec -> why its last load failed (reported once)
        self._parked: list[_Command] = []  # jobs waiting for their model
        self._sessions: dict[str, _Session] = {}
        self._controls: dict[int, tuple[str, _Control]] = {}  # command id -> (session, control) of live edits
        self._running: _Command | None = None
        self._paused: set[str] = set()
        self._pending: deque[_Command] = deque()
        self._cv = threading.Condition()
        self._ids = itertools.count(1)
        self._subscribers: list[tuple[str | None, Callable[[WorkerEvent], None]]] = []
        self._sub_lock = threading.Lock()
        self._closed = False
        self._warming = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ events out
    def subscribe(self, callback: Callable[[WorkerEvent], None], session: str | None = None) -> Callable[[], None]:
        """Call `callback(event)` (on the worker thread) for every event, or one session's; returns unsubscribe."""
        entry = (session, callback)
        with self._sub_lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._sub_lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def events(self, session: str | None = None) -> "queue.Queue[WorkerEvent]":
        """A queue that receives every event (or one session's) from now on."""
        q: queue.Queue = queue.Queue()
        self.subscribe(q.put, session)
        return q

    def _emit(self, event: WorkerEvent) -> None:
        with self._sub_lock:
            targets = [fn for s, fn in self._subscribers if s is None or s == event.session]
        for fn in targets:
            try:
                fn(event)
            except Exception:  # a broken subscriber must not take the engine down
                log.exception("event subscriber failed on %s", type(event).__name__)

    # ------------------------------------------------------------------ commands in (any thread)
    def load_scene(self, session: str, scene: GaussianScene | str | os.PathLike, mask=None, *,
                   label: str | None = None, parts=None, name: str = "") -> Future:
        """Open a scene (object or file path) in `session`; its history restarts there. `parts`: named part
        weights ({name: [N]}) and `name`: the scene's display name, both kept in the history."""
        return self._submit(session, "load", lambda cmd: self._do_load(cmd, scene, mask, label, parts, name))

    def set_parts(self, session: str, parts: dict, *, label: str) -> Future:
        """Replace the session's named parts ({name: weights [N]}, in order): one history entry (undoable)."""
        return self._submit(session, "parts", lambda cmd: self._do_set_parts(cmd, parts, label))

    def current(self, session: str) -> Future:
        """The session's current `SessionState` (scene, mask, parts, name; references to immutable values)."""
        return self._submit(session, "current", self._do_current)

    def start_task(self, session: str, action: str, fn: Callable[..., Any], *, model: str | None = None) -> Future:
        """Run `fn(progress, should_stop)` on the engine thread (mask work: SAM views, lifting). `progress(step,
        total, message)` emits a TaskEvent and raises TaskCancelled after `cancel(session)`; the future resolves
        to fn's result, or None when cancelled. Tasks run between other sessions' edit steps, like quick
        commands, so a click is never stuck behind another session's long edit.

        model: a guidance model spec the task reads (text selection reads the editing model's attention); it is
        loaded on the loader thread like an edit's — the task waits aside meanwhile, the engine keeps serving —
        and passed as `fn(progress, should_stop, model)`."""
        control = _Control()
        return self._submit(session, action, lambda cmd: self._do_task(cmd, fn, model), control=control)

    def warm_up(self) -> Future:
        """Compile and load what the first edit would (the CPU rasterizer's kernels, forward and backward), so
        the first real edit does not wait for it; queued like any command."""
        return self._submit("__warm-up__", "warm-up", self._do_warm_up)

    @property
    def warming_up(self) -> bool:
        """A warm-up is queued or running."""
        with self._cv:
            return any(c.action == "warm-up" for c in self._pending) or self._warming

    def set_mask(self, session: str, mask, *, label: str = "mask") -> Future:
        """Replace the session's mask ([N] weights in [0, 1] or bool; None clears it): one history entry."""
        return self._submit(session, "mask", lambda cmd: self._do_set_mask(cmd, mask, label))

    def start_edit(self, session: str, config: EditConfig, *, loss_fn=None) -> Future:
        """Queue an edit of the session's masked part. The future's `command_id` tags its events; it resolves
        to the `EditResult` (cancelled or not)."""
        control = _Control()
        with self._cv:
            if session in self._paused:
                control.unpaused.clear()
        return self._submit(session, "edit", lambda cmd: self._do_edit(cmd, config, loss_fn), is_edit=True,
                            control=control)

    def start_generate(self, session: str, config: GenerateConfig, *, from_current: bool = False) -> Future:
        """Queue a text-to-3D generation (engine.generate) whose result replaces the session's scene (one history
        entry; the mask restarts all-zero). `from_current`: start from the session's current scene instead of
        `config.init`. The session need not have a scene yet (then the result starts its history). The future's
        `command_id` tags its events; it resolves to a `GenerateResult` (cancelled or not)."""
        control = _Control()
        with self._cv:
            if session in self._paused:
                control.unpaused.clear()
        return self._submit(session, "generate", lambda cmd: self._do_generate(cmd, config, from_current),
                            is_edit=True, control=control)

    def commit_result(self, session: str, scene: GaussianScene, mask, *, label: str) -> Future:
        """Record a result computed outside the worker (a Space's spaces.GPU edit) as ONE history entry, so undo,
        redo and export treat it like the worker's own edits. Resolves to the new scene's size."""
        return self._submit(session, "commit", lambda cmd: self._do_commit(cmd, scene, mask, label))

    def undo(self, session: str) -> Future:
        return self._submit(session, "undo", lambda cmd: self._do_step_history(cmd, forward=False))

    def redo(self, session: str) -> Future:
        return self._submit(session, "redo", lambda cmd: self._do_step_history(cmd, forward=True))

    def export(self, session: str, path: str | os.PathLike, *, spz_frame: str = "spec") -> Future:
        """Write the session's current scene (format from the extension, engine.io.save; `spz_frame` says how
        an .spz is stored: "spec" or "raw", see engine.io.SPZ_FRAMES); resolves to the path."""
        return self._submit(session, "export", lambda cmd: self._do_export(cmd, Path(path), spz_frame))

    def snapshot(self, session: str, *, copy: bool = True) -> Future:
        """(scene, mask) of the session now; copies by default (the engine never changes them in place either)."""
        return self._submit(session, "snapshot", lambda cmd: self._do_snapshot(cmd, copy))

    def restore_session(self, session: str, source: str | None = None) -> Future:
        """Replace the session's state by its autosave in the workspace (after a crash or restart). `source`:
        restore another session's autosave (e.g. a previous run's, whose id a new page does not have) into
        this one; it is then autosaved under this session's id."""
        return self._submit(session, "restore", lambda cmd: self._do_restore(cmd, source))

    def close_session(self, session: str) -> Future:
        """Cancel the session's jobs and forget its state (its autosave stays on disk)."""
        self.cancel(session)
        return self._submit(session, "close", self._do_close)

    def pause(self, session: str) -> None:
        """Hold the session's edit before its next step (immediate); edits queued later start paused too."""
        with self._cv:
            self._paused.add(session)
        for control in self._session_controls(session):
            control.unpaused.clear()
        self._emit_state_async(session)

    def resume(self, session: str) -> None:
        with self._cv:
            self._paused.discard(session)
        for control in self._session_controls(session):
            control.unpaused.set()
        self._emit_state_async(session)

    def cancel(self, session: str) -> None:
        """Stop the session's running edit within one step and drop its queued edits (immediate); also ends
        a pause, and a job waiting for its model."""
        with self._cv:
            self._paused.discard(session)
        for control in self._session_controls(session):
            control.cancel.set()
            control.unpaused.set()
        with self._cv:
            waiting = [c for c in self._parked if c.session == session]
            for cmd in waiting:  # back to the front: it ends as "cancelled before start"
                self._parked.remove(cmd)
                self._pending.appendleft(cmd)
            if waiting:
                self._cv.notify_all()

    def saved_sessions(self) -> list[str]:
        """Session ids with an autosave in the workspace (what the app offers to restore)."""
        if self.workspace is None or not self.workspace.is_dir():
            return []
        return sorted(p.name for p in self.workspace.iterdir() if p.is_dir() and has_autosave(p))

    def shutdown(self, *, cancel: bool = True, timeout: float | None = 10.0) -> None:
        """Stop accepting commands, optionally cancel running/queued edits, finish the queue, join the thread."""
        with self._cv:
            self._closed = True
            sessions = {cmd.session for cmd in self._pending} | ({self._running.session} if self._running else set())
            self._cv.notify_all()
        if cancel:
            for s in sessions:
                self.cancel(s)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ queue plumbing
    def _submit(self, session: str, action: str, run, *, is_edit: bool = False, control: _Control | None = None):
        if not isinstance(session, str) or not session:
            raise ValueError("session must be a non-empty string id")
        future: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine worker has shut down")
            cmd = _Command(next(self._ids), session, action, run, future, is_edit, control)
            future.command_id = cmd.id  # type: ignore[attr-defined]
            if control is not None:
                self._controls[cmd.id] = (session, control)
            self._pending.append(cmd)
            self._cv.notify()
        return future

    def _session_controls(self, session: str) -> list[_Control]:
        with self._cv:
            return [c for s, c in self._controls.values() if s == session]

    def _next_command(self, skip_session: str | None = None, quick_only: bool = False) -> _Command | None:
        """The first pending command that may run now (call holding _cv): not of a session whose job waits
        for its model (its own commands keep their order behind that job)."""
        parked = {c.session for c in self._parked}
        for cmd in self._pending:
            if cmd.session in parked or cmd.session == skip_session or (quick_only and cmd.is_edit):
                continue
            self._pending.remove(cmd)
            return cmd
        return None

    def _loop(self) -> None:
        while True:
            with self._cv:
                cmd = self._next_command()
                while cmd is None and not (self._closed and not self._pending and not self._parked):
                    self._cv.wait(0.5)
                    cmd = self._next_command()
                if cmd is None:
                    return
            try:
                self._execute(cmd)
            except Exception:  # a bug in the plumbing must not end the engine thread for every session
                log.exception("the engine worker failed on %s", cmd.action)

    def _execute(self, cmd: _Command) -> None:
        # A job back from waiting for its model is already running (its future too).
        if not cmd.future.running() and not cmd.future.set_running_or_notify_cancel():
            return
        cmd.parked_on = None
        try:
            result = cmd.run(cmd)
        except _Parked as parked:  # its model is loading: aside until it is loaded (the future stays open)
            self._park(cmd, parked.spec)
            return
        except Exception as exc:  # every failure becomes an event; the worker keeps serving
            log.debug("command %s failed", cmd.action, exc_info=True)
            self._emit(ErrorEvent(cmd.session, cmd.id, cmd.action, _user_message(exc)))
            cmd.future.set_exception(exc)
            if cmd.session in self._sessions:
                self._emit(self._state(cmd.session))
        else:
            cmd.future.set_result(result)
        finally:
            if cmd.control is not None and cmd.parked_on is None:
                with self._cv:
                    self._controls.pop(cmd.id, None)

    def _serve_others(self, running_session: str) -> None:
        """Between two steps of an edit: run queued quick commands of other sessions."""
        while True:
            with self._cv:
                cmd = self._next_command(skip_session=running_session, quick_only=True)
                if cmd is None:
                    return
            self._execute(cmd)

    # ------------------------------------------------------------------ models (loader threads)
    def _model_or_park(self, spec: str | None):
        """The loaded model for `spec`; raises _Parked (after starting its load) when it is not loaded yet,
        or the load's error once when the last load failed."""
        spec = self._resolve_spec(spec)
        with self._cv:
            if spec in self._models:
                return self._models[spec]
            if spec in self._load_errors:
                raise self._load_errors.pop(spec)
            if spec not in self._loading:
                thread = threading.Thread(target=self._load_model, args=(spec,), name=f"load {spec}"[:60],
                                          daemon=True)
                self._loading[spec] = thread
                thread.start()
        raise _Parked(spec)

    def _load_model(self, spec: str) -> None:
        loader = self._loader
        if loader is None:
            from .guidance.loading import load_guidance as loader
        try:
            model, error = loader(spec, device=self.device), None
        except Exception as exc:  # reported to the jobs that wait for it
            model, error = None, exc
        with self._cv:
            if error is None:
                self._models[spec] = model
            else:
                self._load_errors[spec] = error
            self._loading.pop(spec, None)
            waiting = [c for c in self._parked if c.parked_on == spec]
            for cmd in reversed(waiting):  # back to the front of the queue, in their order
                self._parked.remove(cmd)
                self._pending.appendleft(cmd)
            self._cv.notify_all()

    def _park(self, cmd: _Command, spec: str) -> None:
        with self._cv:
            cmd.parked_on = spec  # (its control stays registered: Cancel still reaches it)
            if spec in self._models or spec in self._load_errors:  # loaded meanwhile: run it next
                self._pending.appendleft(cmd)
                self._cv.notify_all()
                return
            self._parked.append(cmd)
        self._emit(NoticeEvent(cmd.session, cmd.id, f"loading the model {spec} (first use; other sessions keep "
                                                    "working meanwhile)…"))
        if cmd.session in self._sessions:
            self._emit(self._state(cmd.session))

    @staticmethod
    def _resolve_spec(spec: str | None) -> str:
        if spec:
            return spec
        from .guidance.base import default_model_spec

        return default_model_spec()

    # ------------------------------------------------------------------ command bodies (worker thread)
    def _session(self, session: str) -> _Session:
        state = self._sessions.get(session)
        if state is None:
            raise ValueError(f"session {session!r} has no scene; load a scene first")
        return state

    def _changed(self, session: _Session) -> None:
        """After any history change: autosave, then tell the UI."""
        if self.workspace is not None:
            autosave(session.history, self.workspace / session.id)
        self._emit(self._state(session.id))

    def _do_load(self, cmd: _Command, scene, mask, label, parts=None, name: str = "") -> int:
        if not isinstance(scene, GaussianScene):
            from .io import load

            path = Path(scene)
            label = label or f"open {path.name}"
            name = name or path.name
            scene = load(path)
        scene.validate()
        weights = None if mask is None else as_mask(mask, len(scene))
        session = _Session(cmd.session, History(scene, weights, label=label or "load scene", parts=parts or (),
                                                name=name))
        self._sessions[cmd.session] = session
        self._changed(session)
        self._emit(DoneEvent(cmd.session, cmd.id, "load", message=f"{len(scene)} Gaussians"))
        return len(scene)

    def _do_set_mask(self, cmd: _Command, mask, label: str) -> None:
        session = self._session(cmd.session)
        weights = None if mask is None else as_mask(mask, len(session.history.current.scene))
        session.history.push(label, mask=weights)
        self._changed(session)
        self._emit(DoneEvent(cmd.session, cmd.id, "mask"))

    def _do_set_parts(self, cmd: _Command, parts: dict, label: str) -> None:
        session = self._session(cmd.session)
        session.history.push(label, parts=parts)
        self._changed(session)
        self._emit(DoneEvent(cmd.session, cmd.id, "parts", message=label))

    def _do_current(self, cmd: _Command) -> SessionState:
        state = self._session(cmd.session).history.current
        return SessionState(state.scene, state.mask, dict(state.parts), state.name)

    def _do_task(self, cmd: _Command, fn, model_spec: str | None = None):
        control = cmd.control

        def progress(step: int, total: int, message: str = "") -> None:
            if control.cancel.is_set():
                raise TaskCancelled()
            self._emit(TaskEvent(cmd.session, cmd.id, cmd.action, int(step), int(total), message))

        if control.cancel.is_set():
            self._emit(DoneEvent(cmd.session, cmd.id, cmd.action, cancelled=True, message="cancelled before start"))
            return None
        args = () if model_spec is None else (self._model_or_park(model_spec),)  # may set the task aside
        try:
            result = fn(progress, control.cancel.is_set, *args)
        except TaskCancelled:
            self._emit(DoneEvent(cmd.session, cmd.id, cmd.action, cancelled=True, message="cancelled"))
            return None
        self._emit(DoneEvent(cmd.session, cmd.id, cmd.action))
        return result

    def _do_warm_up(self, cmd: _Command) -> float:
        import time

        from .render import render
        from .scene import random_scene
        from .camera import orbit_cameras

        start = time.perf_counter()
        with self._cv:
            self._warming = True
        try:
            scene = random_scene(64, seed=0, extent=0.3)
            params = {k: v.clone().requires_grad_(True) for k, v in scene.items()}
            cams = orbit_cameras(torch.zeros(3), 2.0, [0.0], [20.0], width=32, height=32)
            out = render(GaussianScene(**params), cams)
            out.rgb.sum().backward()
        finally:
            with self._cv:
                self._warming = False
        return time.perf_counter() - start

    def _do_commit(self, cmd: _Command, scene: GaussianScene, mask, label: str) -> int:
        session = self._session(cmd.session)
        scene.validate()
        weights = None if mask is None else as_mask(mask, len(scene))
        session.history.push(label, scene=scene, mask=weights)
        self._changed(session)
        self._emit(DoneEvent(cmd.session, cmd.id, "commit", message=label))
        return len(scene)

    def _do_step_history(self, cmd: _Command, forward: bool) -> str:
        session = self._session(cmd.session)
        history = session.history
        if forward:
            if not history.can_redo:
                raise ValueError("nothing to redo")
            label = history.states()[history.cursor + 1].label
            history.redo()
        else:
            if not history.can_undo:
                raise ValueError("nothing to undo")
            label = history.current.label
            history.undo()
        self._changed(session)
        self._emit(DoneEvent(cmd.session, cmd.id, cmd.action, message=label))
        return label

    def _do_export(self, cmd: _Command, path: Path, spz_frame: str = "spec") -> Path:
        from .io import save

        session = self._session(cmd.session)
        save(session.history.current.scene, path, spz_frame=spz_frame)
        self._emit(DoneEvent(cmd.session, cmd.id, "export", message=str(path)))
        return path

    def _do_close(self, cmd: _Command) -> None:
        self._sessions.pop(cmd.session, None)

    def _do_snapshot(self, cmd: _Command, copy: bool):
        current = self._session(cmd.session).history.current
        if not copy:
            return current.scene, current.mask
        return current.scene.clone(), None if current.mask is None else current.mask.clone()

    def _do_restore(self, cmd: _Command, source: str | None = None) -> int:
        if self.workspace is None:
            raise ValueError("this worker has no workspace to restore from")
        history = restore(self.workspace / (source or cmd.session))
        session = _Session(cmd.session, history)
        self._sessions[cmd.session] = session
        if source and source != cmd.session:
            self._changed(session)  # autosave it under this session's id (emits the state)
        else:
            self._emit(self._state(cmd.session))
        self._emit(DoneEvent(cmd.session, cmd.id, "restore", message=history.current.label))
        return len(history.current.scene)

    def model(self, spec: str | None) -> Any:
        """The model for a spec, loaded on first use and cached (blocks until loaded; jobs use the loader
        thread instead, see _model_or_park)."""
        spec = self._resolve_spec(spec)
        while True:
            try:
                return self._model_or_park(spec)
            except _Parked:
                with self._cv:
                    self._cv.wait_for(lambda: spec not in self._loading, timeout=1.0)

    def _do_edit(self, cmd: _Command, config: EditConfig, loss_fn) -> EditResult:
        control = cmd.control
        session = self._session(cmd.session)
        state = session.history.current
        if control.cancel.is_set():  # cancelled while queued
            result = EditResult(scene=state.scene, mask=state.mask, cancelled=True)
            self._emit(DoneEvent(cmd.session, cmd.id, "edit", cancelled=True, message="cancelled before start"))
            return result
        if state.mask is None:
            raise ValueError("nothing is selected; mask the part to edit before starting an edit")
        model = self._model_or_park(config.model)
        with self._cv:
            self._running = cmd
        self._emit(self._state(cmd.session))

        should_stop, on_event = self._job_hooks(cmd)
        try:
            result = run_edit(state.scene, state.mask, config, model, on_event=on_event, should_stop=should_stop,
                              loss_fn=loss_fn)
        finally:
            with self._cv:
                self._running = None
                self._controls.pop(cmd.id, None)
        if result.cancelled:
            self._emit(DoneEvent(cmd.session, cmd.id, "edit", cancelled=True,
                                 message=f"cancelled after {result.steps_done} steps"))
            self._emit(self._state(cmd.session))
            return result
        # The session may have been closed or reloaded while the job ran: adopt the result only if unchanged.
        if self._sessions.get(cmd.session) is session and session.history.current is state:
            session.history.push(f"edit ({config.method}): {config.prompt}", scene=result.scene, mask=result.mask)
            self._changed(session)
            message = f"{result.steps_done} steps"
        else:
            message = "finished, but the session changed meanwhile; result discarded"
        self._emit(DoneEvent(cmd.session, cmd.id, "edit", message=message))
        return result

    def _job_hooks(self, cmd: _Command):
        """(should_stop, on_event) for a job: the pause/cancel flags, serving other sessions between steps, and
        the job's progress/preview events."""
        control = cmd.control

        def should_stop() -> bool:
            self._serve_others(cmd.session)
            while not control.unpaused.wait(0.05):
                self._serve_others(cmd.session)
            return control.cancel.is_set()

        def on_event(event: EditEvent | GenerateEvent) -> None:
            self._emit(ProgressEvent(cmd.session, cmd.id, event.step, event.total, dict(event.losses),
                                     event.elapsed_s, event.eta_s, event.num_gaussians))
            if event.preview is not None:
                self._emit(PreviewEvent(cmd.session, cmd.id, event.step, event.preview,
                                        getattr(event, "scene", None), getattr(event, "mask", None)))

        return should_stop, on_event

    def _do_generate(self, cmd: _Command, config: GenerateConfig, from_current: bool) -> GenerateResult:
        control = cmd.control
        session = self._sessions.get(cmd.session)
        state = session.history.current if session is not None else None
        if control.cancel.is_set():  # cancelled while queued
            self._emit(DoneEvent(cmd.session, cmd.id, "generate", cancelled=True, message="cancelled before start"))
            return GenerateResult(scene=state.scene if state else None, steps_done=0, cancelled=True)
        check_generate_config(config)  # bad input is refused before the model loads
        if from_current:
            initial = self._session(cmd.session).history.current.scene
        else:
            initial = initial_scene(config)
        model = self._model_or_park(config.model)
        with self._cv:
            self._running = cmd
        if session is not None:
            self._emit(self._state(cmd.session))
        should_stop, on_event = self._job_hooks(cmd)
        steps = [0]

        def count_steps(event: GenerateEvent) -> None:
            steps[0] = event.step
            on_event(event)

        try:
            scene = run_generate(config, model, on_event=count_steps, should_stop=should_stop, initial=initial)
        finally:
            with self._cv:
                self._running = None
                self._controls.pop(cmd.id, None)
        if steps[0] < config.steps:  # run_generate ends early only when should_stop said so
            self._emit(DoneEvent(cmd.session, cmd.id, "generate", cancelled=True,
                                 message=f"cancelled after {steps[0]} steps"))
            if session is not None:
                self._emit(self._state(cmd.session))
            return GenerateResult(scene=scene, steps_done=steps[0], cancelled=True)
        label = f"generate ({config.method}): {config.prompt}"
        zeros = torch.zeros(len(scene), dtype=torch.float32)
        now = self._sessions.get(cmd.session)
        if session is None and now is None:  # no scene before: the result starts the session's history
            session = _Session(cmd.session, History(scene, zeros, label=label))
            self._sessions[cmd.session] = session
            self._changed(session)
            message = f"{steps[0]} steps, {len(scene)} Gaussians"
        elif now is session and session.history.current is state:
            session.history.push(label, scene=scene, mask=zeros)
            self._changed(session)
            message = f"{steps[0]} steps, {len(scene)} Gaussians"
        else:  # closed or reloaded while the job ran
            message = "finished, but the session changed meanwhile; result discarded"
        self._emit(DoneEvent(cmd.session, cmd.id, "generate", message=message))
        return GenerateResult(scene=scene, steps_done=steps[0])

    # ------------------------------------------------------------------ state
    def _state(self, session_id: str) -> StateEvent:
        session = self._sessions.get(session_id)
        with self._cv:
            controls = [c for s, c in self._controls.values() if s == session_id]
            paused = session_id in self._paused or any(not c.unpaused.is_set() for c in controls)
        if session is None:
            return StateEvent(session_id, None, 0, False, (), -1, False, False, bool(controls), paused)
        h = session.history
        return StateEvent(session_id, None, len(h.current.scene), h.current.mask is not None, tuple(h.labels()),
                          h.cursor, h.can_undo, h.can_redo, bool(controls), paused)

    def _emit_state_async(self, session: str) -> None:
        """Pause/resume come from UI threads: report the new state without touching the history there."""
        session_state = self._sessions.get(session)
        if session_state is not None:
            self._emit(self._state(session))


def _user_message(exc: BaseException) -> str:
    """The exception as one message for the user; user-fixable errors need no type name."""
    if isinstance(exc, (ValueError, OSError)):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
