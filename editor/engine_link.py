"""EngineLink: the editor's link to the one engine worker (engine.worker.EngineWorker) for everything but jobs.

The worker owns the device, the models and every session's history (scene, selection, parts, name, up; exact
parameters per entry, autosaved). The UI's Session shows the worker's current state and keeps what only the page
needs (tool, view, live preview, images). This module carries changes between them:

    the user's selection / part change ─► Session.on_user_change ─► worker.set_mask / set_parts (a history entry)
    Open / Restore / Undo / Redo / Up axis ─► the worker command ─► the session shows the worker's current state
    Export ─► the worker writes the current scene
    mask tasks (SAM click, select by text) ─► worker.start_task ─► TaskEvents ─► session.mask_task

Jobs (edit, generate) go through a runner (editor.runners): the same worker locally, a spaces.GPU call on a Space.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from .job_status import JobStatus
from .scenes import SceneBundle
from .session import Session, SessionRegistry, UserChange

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 120.0  # longest a UI thread waits for a quick worker command (one edit step + the command)
MASK_TASK_LABELS = {"sam": "SAM click", "text": "text selection"}  # what the Mask panel calls each task


class EngineLink:
    """Sends every session's commands to one EngineWorker and shows its state in the sessions."""

    def __init__(self, registry: SessionRegistry, worker) -> None:
        self.registry = registry
        self.worker = worker
        self._lock = threading.RLock()
        self._task_ids: dict[int, str] = {}  # worker command id of a mask task -> session id
        worker.subscribe(self._on_event)
        registry.on_create.append(self.attach)

    # ------------------------------------------------------------------ sessions
    def attach(self, session: Session) -> None:
        """A new session: open its scene in the worker and send it every later selection change."""
        bundle = session.bundle
        self.wait(self.worker.load_scene(session.id, session.scene, label=f"open {bundle.name}",
                                         parts=session.parts, name=bundle.name, up=bundle.up,
                                         up_source=bundle.up_source))
        session.on_user_change.append(self._on_user_change)

    def forget(self, session_id: str) -> None:
        """The page closed: cancel its job and drop its state in the worker (the autosave stays)."""
        self.worker.close_session(session_id)

    def _on_user_change(self, session: Session, change: UserChange) -> None:
        """The user's selection and named-part changes become history entries in the worker (queued in order;
        the UI does not wait)."""
        if change.kind == "parts":
            self.worker.set_parts(session.id, dict(change.value), label=change.label or "parts")
        else:
            self.worker.set_mask(session.id, change.value.clone(), label=change.label, group=change.group)

    def show_current(self, session: Session, *, opened: bool = False) -> None:
        """Make the session show the worker's current state: scene, mask, parts, name and up. `opened`: it is a
        new scene (loaded, restored, generated), so the view, parts and Edit panel start over."""
        now = self.wait(self.worker.current(session.id))
        if opened:
            session.set_bundle(SceneBundle(now.scene, now.name or "scene", up=now.up, up_source=now.up_source))
        session.show_state(now.scene, now.mask, now.parts, now.name or None, up=now.up, up_source=now.up_source)
        if opened:
            self.reframe(session)

    def load_scene(self, session: Session, bundle: SceneBundle) -> None:
        """Open a scene in the session; its history restarts there."""
        parts = {}
        if bundle.part_ids is not None:
            parts = {name: (bundle.part_ids == i).float() for i, name in enumerate(bundle.part_names)}
        self.wait(self.worker.load_scene(session.id, bundle.scene, label=f"open {bundle.name}", parts=parts,
                                         name=bundle.name, up=bundle.up, up_source=bundle.up_source))
        session.set_bundle(SceneBundle(bundle.scene, bundle.name, bundle.part_ids, list(bundle.part_names),
                                       bundle.up, bundle.up_source))
        self.show_current(session)
        self.reframe(session)

    @staticmethod
    def reframe(session: Session) -> None:
        if session.viewer is not None:
            session.viewer.frame(session.view)

    def set_up(self, session: Session, up) -> None:
        """The user's up axis for the session's scene (the Scene panel): a history entry in the worker (undo
        brings the previous one back; autosaved, and written into a .ply export); views are framed upright."""
        self.wait(self.worker.set_up(session.id, up, "user"))
        self.show_current(session)
        self.reframe(session)

    def saved_sessions(self, exclude: set[str] = frozenset()) -> list[tuple[str, str]]:
        """(description, id) of autosaved sessions, newest first, that a page can restore."""
        from engine.worker import describe_autosave

        found = []
        for session_id in self.worker.saved_sessions():
            if session_id in exclude:
                continue
            meta = describe_autosave(self.worker.workspace / session_id) or {}
            states = meta.get("states") or []
            if not states:
                continue
            current = states[min(int(meta.get("cursor", 0)), len(states) - 1)]
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(meta.get("saved_at", 0))))
            found.append((float(meta.get("saved_at", 0)),
                          f"{when} · {len(states)} steps · {current['label']} · {current['count']:,} Gaussians",
                          session_id))
        return [(text, sid) for _, text, sid in sorted(found, reverse=True)]

    def restore(self, session: Session, source: str) -> None:
        """Bring back an autosaved session (its whole history) into this page's session."""
        if session.job.active:
            raise ValueError("an edit is running; cancel it before restoring")
        self.wait(self.worker.restore_session(session.id, source))
        self.show_current(session, opened=True)

    def adopt_result(self, session: Session, scene, mask, label: str, *, name: str | None = None, up=None,
                     row_sources=None, start: tuple[str, int] | None = None) -> str:
        """A result computed outside the worker (a Space's spaces.GPU edit or generation) becomes one history
        entry in the worker, and the session shows it. A new object (a generation) brings its `name` and `up`
        and opens like a loaded scene; an edit's `row_sources` [N'] lets the named parts follow its rows.
        `start`: the state id the job started from (`start_state`). Returns the worker's note ("" unless the
        history moved while the job ran)."""
        _, note = self.wait(self.worker.commit_result(session.id, scene, mask, label=label, name=name, up=up,
                                                      row_sources=row_sources, start=start))
        self.show_result(session, generated=up is not None)
        return note

    def start_state(self, session: Session) -> tuple[str, int] | None:
        """(history token, state id) of the session's current state (a job remembers where it started); None
        without one."""
        try:
            now = self.wait(self.worker.current(session.id))
            return now.history_token, now.state_id
        except ValueError:  # no scene in the worker yet
            return None

    def show_result(self, session: Session, generated: bool = False) -> None:
        """After a job's result entered the history: show it (`generated`: a new object, which opens like a
        loaded scene with fresh parts and a view framed on it — seen from the angles the user looked from when
        the job started, as its previews were)."""
        started = getattr(session, "job_view", None)
        self.show_current(session, opened=generated)
        if generated:
            if started is not None:
                session.view = session.view.with_angles(started.azimuth, started.elevation)
                self.reframe(session)
            session.job_view = session.view

    def undo(self, session: Session) -> None:
        self._step_history(session, self.worker.undo)

    def redo(self, session: Session) -> None:
        self._step_history(session, self.worker.redo)

    def _step_history(self, session: Session, command) -> None:
        if session.job.active:
            raise ValueError("an edit is running; cancel it before undo/redo")
        self.wait(command(session.id))
        before = session.view
        self.show_current(session)
        if session.view != before:  # another object came back (a generation undone): the 3D view follows
            self.reframe(session)

    def export(self, session: Session, path, *, spz_frame: str = "raw") -> str:
        """Write the current scene; a .ply records the scene's up axis in its header (engine.io.detect_up); an .spz is
        stored in `spz_frame` ("raw" for splat-transform and Niantic's converter)."""
        from .scenes import save_scene

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        name = Path(path).name.lower()
        if name.endswith(".ply") and not name.endswith(".compressed.ply"):
            scene, _ = self.wait(self.worker.snapshot(session.id, copy=False))  # queued after earlier commands
            return str(save_scene(scene, path, up=session.up))
        return str(self.wait(self.worker.export(session.id, Path(path), spz_frame=spz_frame)))

    @staticmethod
    def wait(future, timeout: float = COMMAND_TIMEOUT_S):
        """The result of a quick worker command; its errors (ValueError/OSError) reach the caller as they are."""
        return future.result(timeout)

    # ------------------------------------------------------------------ mask tasks (SAM, lifting)
    def start_mask_task(self, session: Session, action: str, work, on_result, *, model: str | None = None) -> None:
        """Run `work(progress, should_stop)` on the engine thread; its progress shows in `session.mask_task`,
        and `on_result(result)` runs when it ends (on the worker thread). One task per session at a time.
        model: the guidance model spec the task reads, loaded by the worker's loader thread (the task waits
        aside meanwhile) and passed as `work(progress, should_stop, model)`."""
        with session.lock:
            if session.mask_task.active:
                raise ValueError(f"the previous {session.mask_task.kind or 'mask task'} is still being worked "
                                 "on; wait for it or cancel it")
            session.check_mask_editable()
            session.mask_task = JobStatus(kind=MASK_TASK_LABELS.get(action, action), state="queued",
                                          message="waiting for the engine", started_at=time.time())
            session.notice = ""
            session.revision += 1
        with self._lock:
            future = self.worker.start_task(session.id, action, work, model=model)
            self._task_ids[future.command_id] = session.id

        def finished(done) -> None:
            with self._lock:
                self._task_ids.pop(future.command_id, None)
            try:
                result = done.result()
                if result is None:
                    state, message = "cancelled", "cancelled"
                else:
                    on_result(result)
                    state, message = "done", ""
            except Exception as exc:  # noqa: BLE001 - shown in the Mask panel, like a gesture's warning
                state, message = "error", str(exc) or type(exc).__name__
            with session.lock:
                session.mask_task.state, session.mask_task.message = state, message
                if state == "error":
                    session.notice = message
                session.revision += 1
            if session.viewer is not None and state == "error":
                session.viewer.set_status(f"⚠️ {message}")

        future.add_done_callback(finished)

    def cancel_mask_task(self, session: Session) -> None:
        if session.mask_task.active:
            self.worker.cancel(session.id)

    # ------------------------------------------------------------------ worker events (worker thread)
    def session_for(self, session_id: str) -> Session | None:
        return next((s for s in self.registry.sessions() if s.id == session_id), None)

    def _on_event(self, event) -> None:
        """History state and mask-task progress; job events are the local runner's (editor.runners.local)."""
        from engine.worker import NoticeEvent, StateEvent, TaskEvent

        if not isinstance(event, (StateEvent, TaskEvent, NoticeEvent)):
            return
        session = self.session_for(event.session)
        if session is None:
            return
        if isinstance(event, StateEvent):
            with session.lock:
                session.history_labels, session.history_cursor = list(event.labels), event.cursor
                session.revision += 1
            return
        if isinstance(event, TaskEvent):
            with session.lock:
                task = session.mask_task
                task.state, task.step, task.total, task.message = "running", event.step, event.total, event.message
                session.revision += 1
            if session.viewer is not None:
                session.viewer.set_status(f"⏳ {event.message}")
            return
        with self._lock:
            is_task = event.job is not None and self._task_ids.get(event.job) == session.id
        if is_task:  # a mask task waiting for its model to load
            with session.lock:
                session.mask_task.message = event.message
                session.revision += 1
