"""LocalRunner: jobs on this process's engine worker, which owns the device; pause, resume and cancel at once.

    run_edit ─► worker.start_edit ─► ProgressEvent / PreviewEvent ─► session.job (apply_progress)
                                 └► DoneEvent ─► the session shows the worker's new current state
    run_generate ─► worker.start_generate ─► the same events ─► the result opens as a new scene

The run_* generators poll the session's JobStatus (filled from the worker's events on the worker thread) and yield
a snapshot whenever it changed, until the job ends. While the job waits behind other sessions' jobs, each poll
asks the worker where it stands (`queue_wait`) and says so in the job's message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

from ..job_status import JobStatus, apply_progress
from ..session import Session
from ..settings import INIT_CURRENT, checked_edit_config, checked_generate_config
from . import show_after, view_cameras, view_image

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often a streaming handler looks at the job status


class LocalRunner:
    can_pause = True

    def __init__(self, link, models) -> None:
        self.link, self.models, self.worker = link, models, link.worker
        self._lock = threading.RLock()
        self._job_ids: dict[int, str] = {}  # worker command id -> session id
        self._generations: set[int] = set()  # worker command ids of generations (their result opens as a new scene)
        self.worker.subscribe(self._on_event)

    # ------------------------------------------------------------------ starting (UI threads)
    def run_edit(self, session: Session, settings) -> Iterator[JobStatus]:
        self.start_edit(session, settings)
        yield from self.stream(session)

    def run_generate(self, session: Session, settings) -> Iterator[JobStatus]:
        self.start_generate(session, settings)
        yield from self.stream(session)

    def start_edit(self, session: Session, settings) -> None:
        """Queue an edit of the session's selection; bad input raises ValueError before anything is queued."""
        with session.lock:
            config = checked_edit_config(session, settings, self.models)
            self._queue(session, config, lambda cameras: self.worker.start_edit(session.id, config,
                                                                                preview_cameras=cameras))
        self.models.mark_loading(config.model)

    def start_generate(self, session: Session, settings) -> None:
        """Queue a text-to-3D generation; its result opens as the session's scene (undo goes back)."""
        with session.lock:
            config = checked_generate_config(session, settings, self.models)
            angles = (session.view.azimuth, session.view.elevation)  # previews from the user's view
            future = self._queue(session, config, lambda _: self.worker.start_generate(
                session.id, config, from_current=settings.init == INIT_CURRENT,
                name=f"generated: {config.prompt.strip()[:60]}", preview_angles=angles))
            with self._lock:
                self._generations.add(future.command_id)
        self.models.mark_loading(config.model)

    def _queue(self, session: Session, config, submit):
        """The job's status, then the worker command `submit(cameras)` (`cameras`: the session's view, which
        the previews are drawn from), registered before its first event can arrive."""
        view = session.view
        session.job = JobStatus(state="queued", total=config.steps, message=self._queued_message(),
                                before=view_image(session.scene, view))
        session.job_view = view
        with self._lock:
            future = submit(view_cameras(view))
            self._job_ids[future.command_id] = session.id
        session.job.job_id = str(future.command_id)
        if session.viewer is not None:
            session.viewer.set_editing(True)
        return future

    def _queued_message(self) -> str:
        if getattr(self.worker, "warming_up", False):
            return "waiting for the engine: warming up (the first start compiles the renderer)"
        return "waiting for the engine"

    def stream(self, session: Session) -> Iterator[JobStatus]:
        """Snapshots of the session's job whenever it changed, until it is no longer active."""
        seen = None
        while True:
            self._refresh_queued(session)
            with session.lock:
                job = session.job
                key = (job.state, job.step, job.preview_count, len(job.losses), job.message)
                snapshot = job.copy()
            if key != seen:
                seen = key
                yield snapshot
            if not snapshot.active:
                return
            time.sleep(POLL_S)

    def _refresh_queued(self, session: Session) -> None:
        """A queued job's message says the jobs ahead of it and the running one's time left (the warm-up's
        and a model load's own messages stay)."""
        with session.lock:
            job_id = session.job.job_id if session.job.state == "queued" else None
        if job_id is None or getattr(self.worker, "warming_up", False):
            return
        wait = self.worker.queue_wait(int(job_id))
        if wait is None:  # running already, or set aside while its model loads (a notice says so)
            return
        with session.lock:
            if session.job.state == "queued" and session.job.job_id == job_id:
                session.job.message = queued_message(wait, session.id)

    # ------------------------------------------------------------------ controls (immediate)
    def pause(self, session: Session) -> None:
        if session.job.state in ("queued", "running"):
            self.worker.pause(session.id)
            self._set_job(session, state="paused")

    def resume(self, session: Session) -> None:
        if session.job.state == "paused":
            self.worker.resume(session.id)
            self._set_job(session, state="running")

    def cancel(self, session: Session) -> None:
        if session.job.active:
            self.worker.resume(session.id)
            self.worker.cancel(session.id)
            self._set_job(session, message="cancelling…")

    @staticmethod
    def _set_job(session: Session, **changes) -> None:
        with session.lock:
            for key, value in changes.items():
                setattr(session.job, key, value)

    # ------------------------------------------------------------------ worker events (worker thread)
    def _on_event(self, event) -> None:
        from engine.worker import DoneEvent, ErrorEvent, NoticeEvent, PreviewEvent, ProgressEvent

        with self._lock:
            mine = event.job is not None and event.job in self._job_ids
        if not mine:
            return
        session = self.link.session_for(event.session)
        if session is None:
            return
        if isinstance(event, NoticeEvent):
            self._set_job(session, message=event.message)
        elif isinstance(event, ProgressEvent):
            self.models.mark_loaded(self.models.spec_for(session), str(getattr(self.worker, "device", "")))
            with session.lock:
                apply_progress(session.job, step=event.step, total=event.total, elapsed_s=event.elapsed_s,
                               eta_s=event.eta_s, losses=event.losses)
        elif isinstance(event, PreviewEvent):
            with session.lock:
                session.job.preview = event.image
                session.job.preview_count += 1
            if event.scene is not None:  # the scene so far: both views show it live
                session.set_live(event.scene, event.mask)
                if session.viewer is not None:
                    session.viewer.show(event.scene, session.display_mask())
        elif isinstance(event, DoneEvent):
            self._job_finished(session, event)
        elif isinstance(event, ErrorEvent):
            if event.kind == "model-unavailable":
                self.models.set_state(self.models.spec_for(session), "unavailable", "", event.message)
            self._finish(session, event.job, "error", event.message or "error")  # the whole message

    def _job_finished(self, session: Session, event) -> None:
        if event.cancelled:
            self._finish(session, event.job, "cancelled", event.message or "cancelled")
            return
        with self._lock:
            generated = event.job in self._generations
            self._generations.discard(event.job)

        def adopt() -> None:  # not on the worker thread: showing the result asks the worker for it
            try:
                self.link.show_result(session, generated)
                show_after(session)
                self._finish(session, event.job, "done", event.message)
            except Exception as exc:  # noqa: BLE001
                log.exception("adopting the job's result failed")
                self._finish(session, event.job, "error", str(exc))

        threading.Thread(target=adopt, name="adopt-result", daemon=True).start()

    def _finish(self, session: Session, job_id, state: str, message: str) -> None:
        with self._lock:
            self._job_ids.pop(job_id, None)
            self._generations.discard(job_id)
        with session.lock:
            session.job.state = state
            session.job.message = message
            session.job.eta_s = None
            session.live = None
            session.revision += 1
        if session.viewer is not None:
            session.viewer.set_editing(False)
            session.push_to_viewer()


JOB_NAMES = {"edit": "edit", "generate": "generation"}


def queued_message(wait, session_id: str) -> str:
    """'waiting for the engine: 1 job ahead (another session's edit, ~40 s left)' for an
    engine.worker.QueueWait; just 'waiting for the engine' when nothing is ahead (it starts next)."""
    if not wait.ahead:
        return "waiting for the engine"
    count = len(wait.ahead)
    session, action = wait.ahead[0]
    whose = "this session's" if session == session_id else "another session's"
    detail = f"{whose} {JOB_NAMES.get(action, action)}"
    if wait.running_eta_s is not None:
        detail += f", ~{_seconds(wait.running_eta_s)} left"
    if count > 1:
        detail += f"; then {count - 1} more"
    return f"waiting for the engine: {count} job{'s' if count > 1 else ''} ahead ({detail})"


def _seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"
