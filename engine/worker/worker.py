"""EngineWorker: the worker's public commands. Each one queues a command and returns its Future at once.

The parts it is made of, each in its own module: events out (bus.py, events.py), the command queue with its
pause/cancel flags (queue.py), the model cache (models.py), the sessions' histories and their autosave
(sessions.py, history.py, persistence.py) and the bodies of jobs and tasks (jobs.py). This module wires them
and turns each command's failure into an ErrorEvent; see the package docstring for the whole story.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

import torch

from ..edit import EditConfig, as_mask
from ..generate import GenerateConfig
from ..scene import GaussianScene
from ..up import Z_UP, format_up
from .bus import EventBus
from .events import DoneEvent, ErrorEvent, NoticeEvent, WorkerEvent, error_kind, user_message
from .history import History
from .jobs import Jobs
from .models import ModelCache, Parked
from .queue import JOB, TASK, Command, CommandQueue
from .sessions import SessionStore

log = logging.getLogger(__name__)

WARM_UP_SESSION = "__warm-up__"


class EngineWorker:
    """One thread that owns the device and the models and runs every session's commands; see the package
    docstring."""

    def __init__(self, *, workspace: str | os.PathLike | None = None, device: torch.device | str | None = None,
                 model_loader: Callable[..., Any] | None = None, name: str = "engine") -> None:
        """workspace: autosave folder (one subfolder per session), None for no autosave. device: where models
        run (default: CUDA when available). model_loader(spec, device=...): engine.guidance.load_guidance by
        default; tests pass their own."""
        self.workspace = Path(workspace).expanduser() if workspace is not None else None
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self._bus = EventBus()
        self._queue = CommandQueue()
        self._models = ModelCache(device=self.device, loader=model_loader, on_loaded=self._queue.unpark)
        self._sessions = SessionStore(self.workspace, self._bus, self._queue.flags)
        self._jobs = Jobs(self._queue, self._models, self._sessions, self._bus, self._execute)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ events out
    def subscribe(self, callback: Callable[[WorkerEvent], None], session: str | None = None) -> Callable[[], None]:
        """Call `callback(event)` (on the worker thread) for every event, or one session's; returns unsubscribe."""
        return self._bus.subscribe(callback, session)

    def events(self, session: str | None = None) -> "queue.Queue[WorkerEvent]":
        """A queue that receives every event (or one session's) from now on."""
        return self._bus.queue(session)

    # ------------------------------------------------------------------ the session's state (history entries)
    def load_scene(self, session: str, scene: GaussianScene | str | os.PathLike, mask=None, *,
                   label: str | None = None, parts=None, name: str = "", up=None,
                   up_source: str | None = None) -> Future:
        """Open a scene (object or file path) in `session`; its history restarts there. `parts`: named part
        weights ({name: [N]}), `name`: the scene's display name, `up`/`up_source`: its up axis and how it was
        found (engine.worker.history.UP_SOURCES; "user" when only `up` is given) — all kept in the history.
        Without `up`, a file's up is detected (engine.io.detect_up) and an object's is +z ("default")."""

        def run(cmd: Command) -> int:
            loaded, shown, opened, found_up, found_source = scene, name, label, up, up_source
            if not isinstance(scene, GaussianScene):
                from ..io import load
                from ..io.detect_up import detect_up

                path = Path(scene)
                loaded, shown, opened = load(path), name or path.name, label or f"open {path.name}"
                if up is None:
                    guess = detect_up(path, loaded)
                    found_up, found_source = guess.up, guess.source
            if found_up is None:
                found_up, found_source = Z_UP, "default"
            loaded.validate()
            weights = None if mask is None else as_mask(mask, len(loaded))
            self._sessions.open(cmd.session, History(loaded, weights, label=opened or "load scene", parts=parts or (),
                                name=shown, up=found_up, up_source=found_source or "user", owned=loaded is not scene))
            self._done(cmd, f"{len(loaded)} Gaussians")
            return len(loaded)

        return self._queue.submit(session, "load", run)

    def set_mask(self, session: str, mask, *, label: str = "mask", group: bool = False) -> Future:
        """Replace the session's mask ([N] weights in [0, 1] or bool; None clears it): one history entry, or
        with `group` the continuation of the current one (History.push: one brush stroke, one entry)."""

        def run(cmd: Command) -> None:
            history = self._sessions.get(cmd.session)
            history.push(label, mask=None if mask is None else as_mask(mask, len(history.current.scene)), group=group)
            self._changed(cmd)

        return self._queue.submit(session, "mask", run)

    def set_parts(self, session: str, parts: dict, *, label: str) -> Future:
        """Replace the session's named parts ({name: weights [N]}, in order): one history entry (undoable)."""

        def run(cmd: Command) -> None:
            self._sessions.get(cmd.session).push(label, parts=parts)
            self._changed(cmd, label)

        return self._queue.submit(session, "parts", run)

    def set_up(self, session: str, up, source: str = "user", *, label: str | None = None) -> Future:
        """Set the scene's up axis (a 3-vector, made unit; `source`: how it was found, "user" by default): one
        history entry, so undo brings the previous up back. Resolves to the unit up."""

        def run(cmd: Command):
            state = self._sessions.get(cmd.session).push(label or f"up axis {format_up(up)}", up=up, up_source=source)
            self._changed(cmd, state.label)
            return state.up

        return self._queue.submit(session, "up", run)

    def commit_result(self, session: str, scene: GaussianScene, mask, *, label: str, up=None,
                      up_source: str = "generated", name: str | None = None, row_sources=None,
                      start: tuple[str, int] | None = None) -> Future:
        """Record a result computed outside the worker (a Space's spaces.GPU edit or generation) as ONE history
        entry, like the worker's own jobs. A generated object brings its `up` (source "generated" unless said
        otherwise) and `name` and starts without parts; else the session's up, name and parts stay (`row_sources`
        [N']: an edit's row map, History.push). `start`: (history token, state id) the job started from: the
        result lands after it or on top (History.push_result), or nowhere if another scene was opened meanwhile.
        Resolves to (the new scene's size, a note for the user: "" unless the history had moved)."""

        def run(cmd: Command) -> tuple[int, str]:
            history = self._sessions.get(cmd.session)
            if start is not None and start[0] != history.token:
                return len(history.current.scene), "finished, but another scene was opened meanwhile; discarded"
            scene.validate()
            weights = None if mask is None else as_mask(mask, len(scene))
            extra = {"name": name} if up is None else {"parts": (), "name": name, "up": up, "up_source": up_source}
            rows = row_sources if up is None else None
            note = history.push_result(history.current.id if start is None else start[1], label, scene, weights,
                                       row_sources=rows, **extra)
            self._changed(cmd, label)
            return len(scene), note

        return self._queue.submit(session, "commit", run)

    def undo(self, session: str) -> Future:
        """Step the session's history back; resolves to the label of the entry undone."""
        return self._queue.submit(session, "undo", lambda cmd: self._step_history(cmd, forward=False))

    def redo(self, session: str) -> Future:
        """Step the session's history forward; resolves to the label of the entry redone."""
        return self._queue.submit(session, "redo", lambda cmd: self._step_history(cmd, forward=True))

    def _step_history(self, cmd: Command, forward: bool) -> str:
        """Undo or redo one entry; the label is the entry's that was undone or redone."""
        history = self._sessions.get(cmd.session)
        if not (history.can_redo if forward else history.can_undo):
            raise ValueError(f"nothing to {'redo' if forward else 'undo'}")
        if forward:
            label = history.redo().label
        else:
            label = history.current.label
            history.undo()
        self._changed(cmd, label)
        return label

    # ------------------------------------------------------------------ reading the session
    def current(self, session: str) -> Future:
        """The session's current `SessionState` (scene, mask, parts, name, up; references to immutable values)."""
        return self._queue.submit(session, "current", lambda cmd: self._sessions.current(cmd.session))

    def snapshot(self, session: str, *, copy: bool = True) -> Future:
        """(scene, mask) of the session now; copies by default (the engine never changes them in place either)."""

        def run(cmd: Command):
            now = self._sessions.get(cmd.session).current
            if not copy:
                return now.scene, now.mask
            return now.scene.clone(), None if now.mask is None else now.mask.clone()

        return self._queue.submit(session, "snapshot", run)

    def export(self, session: str, path: str | os.PathLike, *, spz_frame: str = "raw") -> Future:
        """Write the session's current scene (format from the extension, engine.io.save; `spz_frame` says how
        an .spz is stored: "raw" (default) or "spec", see engine.io.SPZ_FRAMES); resolves to the path."""

        def run(cmd: Command) -> Path:
            from ..io import save

            save(self._sessions.get(cmd.session).current.scene, Path(path), spz_frame=spz_frame)
            self._done(cmd, str(Path(path)))
            return Path(path)

        return self._queue.submit(session, "export", run)

    # ------------------------------------------------------------------ sessions and their autosave
    def restore_session(self, session: str, source: str | None = None) -> Future:
        """Replace the session's state by its autosave in the workspace (after a crash or restart). `source`:
        restore another session's autosave (e.g. a previous run's, whose id a new page does not have) into
        this one; it is then autosaved under this session's id."""

        def run(cmd: Command) -> int:
            history = self._sessions.restore(cmd.session, source)
            self._done(cmd, history.current.label)
            return len(history.current.scene)

        return self._queue.submit(session, "restore", run)

    def close_session(self, session: str) -> Future:
        """Cancel the session's jobs and forget its state (its autosave stays on disk)."""
        self.cancel(session)
        return self._queue.submit(session, "close", lambda cmd: self._sessions.close(cmd.session))

    def saved_sessions(self) -> list[str]:
        """Session ids with an autosave in the workspace (what the app offers to restore)."""
        return self._sessions.saved()

    # ------------------------------------------------------------------ jobs and tasks
    def start_edit(self, session: str, config: EditConfig, *, loss_fn=None, preview_cameras=None) -> Future:
        """Queue an edit of the session's masked part. `preview_cameras`: one camera (the session's view) the
        previews are drawn from (None: the edit's own orbit). The future's `command_id` tags its events; it
        resolves to the `EditResult` (cancelled or not)."""
        return self._queue.submit(session, "edit", lambda cmd: self._jobs.edit(cmd, config, loss_fn,
                                                                                preview_cameras), JOB)

    def start_generate(self, session: str, config: GenerateConfig, *, from_current: bool = False,
                       name: str | None = None, preview_angles: tuple[float, float] | None = None) -> Future:
        """Queue a text-to-3D generation (engine.generate) whose result replaces the session's scene (one history
        entry; the mask restarts all-zero, the up is the config's, source "generated", the named parts restart
        empty). `from_current`: start from the session's current scene instead of `config.init` (its parts
        stay). `name`: the new scene's display name (None keeps the session's). `preview_angles`: (azimuth,
        elevation) the previews are seen from (the user's view). The session need not have a
        scene yet (then the result starts its history). The future's `command_id` tags its events; it resolves
        to a `GenerateResult` (cancelled or not)."""
        return self._queue.submit(session, "generate",
                                  lambda cmd: self._jobs.generate(cmd, config, from_current, name, preview_angles),
                                  JOB)

    def start_task(self, session: str, action: str, fn: Callable[..., Any], *, model: str | None = None) -> Future:
        """Run `fn(progress, should_stop)` on the engine thread (mask work: SAM views, lifting). `progress(step,
        total, message)` emits a TaskEvent and raises TaskCancelled after `cancel(session)`; the future resolves
        to fn's result, or None when cancelled. Tasks run between other sessions' edit steps, like quick
        commands, so a click is never stuck behind another session's long edit.

        model: a guidance model spec the task reads (text selection reads the editing model's attention); it is
        loaded on the loader thread like an edit's — the task waits aside meanwhile, the engine keeps serving —
        and passed as `fn(progress, should_stop, model)`."""
        return self._queue.submit(session, action, lambda cmd: self._jobs.task(cmd, fn, model), TASK)

    def warm_up(self) -> Future:
        """Compile and load what the first edit would (the CPU rasterizer's kernels, forward and backward), so
        the first real edit does not wait for it; queued like any command. Resolves to the seconds it took."""
        return self._queue.submit(WARM_UP_SESSION, "warm-up", self._jobs.warm_up)

    def queue_wait(self, command_id: int):
        """Where a queued job stands (engine.worker.queue.QueueWait: the jobs ahead, the running one's time
        left); None once it runs, while it waits for its model, or when unknown. Immediate, not queued."""
        return self._queue.wait_of(command_id)

    @property
    def warming_up(self) -> bool:
        """A warm-up is queued or running."""
        return self._queue.has_pending("warm-up") or self._jobs.warming

    def pause(self, session: str) -> None:
        """Hold the session's edit before its next step (immediate); edits queued later start paused too."""
        self._queue.pause(session)
        self._sessions.announce(session)

    def resume(self, session: str) -> None:
        self._queue.resume(session)
        self._sessions.announce(session)

    def cancel(self, session: str) -> None:
        """Stop the session's running edit within one step and drop its queued edits (immediate); also ends
        a pause, and a job waiting for its model."""
        self._queue.cancel(session)

    def shutdown(self, *, cancel: bool = True, timeout: float | None = 10.0) -> None:
        """Stop accepting commands, optionally cancel running/queued edits, finish the queue, join the thread."""
        busy = self._queue.close()
        if cancel:
            for session in busy:
                self.cancel(session)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ the engine thread
    def _loop(self) -> None:
        while (cmd := self._queue.take()) is not None:
            try:
                self._execute(cmd)
            except Exception:  # a bug in the plumbing must not end the engine thread for every session
                log.exception("the engine worker failed on %s", cmd.action)

    def _execute(self, cmd: Command) -> None:
        """Run one command: its result or exception goes to its future, a failure also to an ErrorEvent; a job
        whose model is loading is set aside (its future stays open)."""
        if not cmd.future.running() and not cmd.future.set_running_or_notify_cancel():
            return  # (a job back from waiting for its model is already running)
        cmd.parked_on = None
        try:
            result = cmd.run(cmd)
        except Parked as parked:
            if self._queue.park(cmd, parked.spec, self._models.settled):
                self._bus.emit(NoticeEvent(cmd.session, cmd.id, f"loading the model {parked.spec} (first use; "
                                                                "other sessions keep working meanwhile)…"))
                self._sessions.announce(cmd.session)
            return
        except Exception as exc:  # every failure becomes an event; the worker keeps serving
            log.debug("command %s failed", cmd.action, exc_info=True)
            self._bus.emit(ErrorEvent(cmd.session, cmd.id, cmd.action, user_message(exc), error_kind(exc)))
            cmd.future.set_exception(exc)
            self._sessions.announce(cmd.session)
        else:
            cmd.future.set_result(result)
        finally:
            if cmd.control is not None and cmd.parked_on is None:
                self._queue.release(cmd)

    def _changed(self, cmd: Command, message: str = "") -> None:
        """A history command changed the session: autosave, tell the UI, then say the command is done."""
        self._sessions.changed(cmd.session)
        self._done(cmd, message)

    def _done(self, cmd: Command, message: str = "") -> None:
        self._bus.emit(DoneEvent(cmd.session, cmd.id, cmd.action, message=message))
