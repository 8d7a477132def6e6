"""ZeroGpuRunner: Space mode, where a GPU exists only inside a `spaces.GPU` call made from the request handler.

Run calls the decorated generator (editor.runners.gpu_calls) inside the request and reads its stream of progress
records into `session.job` (the same `apply_progress` as a local job), yielding statuses to the page; the result
enters the worker's history as ONE entry (EngineLink.adopt_result), so undo, redo, export and autosave behave as
after a local job.

**Cancel** crosses the process boundary two ways. The Cancel button sets the session's `CancelToken`: the handler
closes the GPU generator at the next record it receives (ZeroGPU then stops its worker's generator, which stops the
edit before its next step), and the token also creates a small file that the GPU function checks before every step
(the forked worker shares the file system). The session's scene is unchanged either way. Closing the page (Gradio
closing the handler) closes the stream too. There is no pause: a GPU call cannot wait for the user.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..job_status import JobStatus, apply_progress
from ..session import Session
from ..settings import INIT_CURRENT, checked_edit_config, checked_generate_config
from . import gpu_calls
from . import show_after, view_cameras, view_image
from .gpu_calls import GpuResult, GpuStarted, record_renderer
from .gpu_time import (check_gpu_time, edit_duration, estimate_edit_seconds, estimate_generate_seconds,
                       generate_duration, gpu_wrap)

FRONTMATTER_PATH = Path(__file__).resolve().parents[2] / "README.md"  # the Space's front-matter
POLL_S = 0.2  # the handlers pass progress to the page at most this often (previews always)


class CancelToken:
    """A session's request to stop its running GPU job: an event this process reads and a file the GPU process
    reads (a forked ZeroGPU worker shares the file system, not the memory)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / f"cancel-{uuid.uuid4().hex}"
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError:
            pass  # the stream is still closed at the next record

    def is_set(self) -> bool:
        return self._event.is_set()

    def discard(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass


class ZeroGpuRunner:
    can_pause = False

    def __init__(self, link, models, *, gpu_edit: Callable | None = None,
                 gpu_generate: Callable | None = None) -> None:
        """gpu_edit / gpu_generate: the GPU functions as spaces.GPU decorated them (decorated here, once per app,
        unless given: tests pass a ZeroGPU double's)."""
        self.link, self.models = link, models
        self.gpu_edit = gpu_edit or gpu_wrap(gpu_calls.run_edit_on_gpu, edit_duration)
        self.gpu_generate = gpu_generate or gpu_wrap(gpu_calls.run_generate_on_gpu, generate_duration)
        self._tokens: dict[str, CancelToken] = {}  # session id -> the token of its running GPU job
        self._tokens_lock = threading.Lock()

    # ------------------------------------------------------------------ jobs
    def run_edit(self, session: Session, settings) -> Iterator[JobStatus]:
        """One edit through the GPU function, inside the calling request handler. Bad input, or a job longer
        than GPU_MAX_DURATION_S, raises ValueError before anything runs."""
        start = self.link.start_state(session)
        with session.lock:
            config = checked_edit_config(session, settings, self.models)
            seconds = check_gpu_time(estimate_edit_seconds(len(session.scene), config), config.steps, "edit")
            scene, mask = session.scene, session.selection
            token = self._start(session, config, seconds)
        yield session.job.copy()

        def adopt(result: GpuResult) -> str:
            note = self.link.adopt_result(session, result.scene, result.mask,
                                          f"edit ({config.method}): {config.prompt}",
                                          row_sources=result.row_sources, start=start)
            show_after(session)
            return " · ".join(filter(None, (f"{result.steps_done} steps on {result.device} ({result.renderer} "
                                            "renderer)", note)))

        from engine.worker.run import EditJob

        stream = self.gpu_edit(EditJob(scene.clone(), mask.clone(), config, view_cameras(session.job_view)),
                               str(token.path))
        yield from self._consume(session, config.model, stream, token, adopt)

    def run_generate(self, session: Session, settings) -> Iterator[JobStatus]:
        """One text-to-3D generation through the GPU function; the result opens as the session's scene in ONE
        history entry (all-zero mask), named like a local generation's."""
        start = self.link.start_state(session)
        with session.lock:
            config = checked_generate_config(session, settings, self.models)
            initial = session.scene.clone() if settings.init == INIT_CURRENT else None
            seconds = check_gpu_time(estimate_generate_seconds(config, None if initial is None else len(initial)),
                                     config.steps, "generation")
            token = self._start(session, config, seconds)
        yield session.job.copy()

        def adopt(result: GpuResult) -> str:
            scene = result.scene
            note = self.link.adopt_result(session, scene, torch.zeros(len(scene)),
                                          f"generate ({config.method}): {config.prompt}",
                                          name=f"generated: {config.prompt.strip()[:60]}", up=config.up, start=start)
            show_after(session)
            return " · ".join(filter(None, (f"{result.steps_done} steps, {len(scene)} Gaussians on {result.device} "
                                            f"({result.renderer} renderer)", note)))

        from engine.worker.run import GenerateJob

        angles = (session.job_view.azimuth, session.job_view.elevation)  # previews from the user's view
        stream = self.gpu_generate(GenerateJob(config, initial, angles), str(token.path))
        yield from self._consume(session, config.model, stream, token, adopt)

    def _start(self, session: Session, config, seconds: int) -> CancelToken:
        """The job's status (its before image from the session's view) and its cancel token (hold the lock)."""
        session.job = JobStatus(state="running", total=config.steps, started_at=time.time(),
                                before=view_image(session.scene, session.view),
                                message=f"waiting for a GPU (up to {seconds} s requested)")
        session.job_view = session.view
        token = CancelToken(session.workspace / "gpu-jobs")
        with self._tokens_lock:
            self._tokens[session.id] = token
        return token

    def _consume(self, session: Session, spec: str, stream, token: CancelToken,
                 adopt: Callable[[GpuResult], str]) -> Iterator[JobStatus]:
        """Read the GPU stream into session.job (yielding a status at most every POLL_S, and for every preview)
        until its GpuResult, a Cancel (the stream is closed at once) or an error; then adopt the result or leave
        the session as it was. Closing this generator (the page went away) closes the stream too."""
        result: GpuResult | None = None
        state = message = ""
        shown = 0.0
        try:
            for record in stream:
                if isinstance(record, GpuResult):
                    result = record
                    break
                if isinstance(record, GpuStarted):
                    record_renderer(record.renderer, record.renderer_reason)
                    continue
                with session.lock:
                    apply_progress(session.job, step=record.step, total=record.total, elapsed_s=record.elapsed_s,
                                   eta_s=record.eta_s, losses=record.losses, preview=record.preview)
                    session.revision += 1
                if token.is_set():
                    break
                now = time.monotonic()
                if record.preview is not None or now - shown >= POLL_S:
                    shown = now
                    yield session.job.copy()
                if token.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - the page shows the error; the session is unchanged
            state, message = "error", gpu_calls.error_text(exc)
        finally:
            stream.close()  # ends the GPU call (ZeroGPU stops its worker's generator at its next yield)
            self._drop_token(session, token)
        if state == "error":
            pass  # the stream itself failed
        elif token.is_set() or (result is not None and result.cancelled):
            steps = result.steps_done if result is not None else session.job.step
            state, message = "cancelled", f"cancelled after {steps} steps"
        elif result is None:
            state, message = "error", "the GPU job ended without a result"
        elif result.error:
            state, message = "error", result.error
        else:
            self.models.mark_loaded(spec, result.device)
            with session.lock:
                session.job.step = result.steps_done
            try:
                state, message = "done", adopt(result)
            except Exception as exc:  # noqa: BLE001
                state, message = "error", gpu_calls.error_text(exc)
        with session.lock:
            session.job.state, session.job.message, session.job.eta_s = state, message, None
            session.revision += 1
            final = session.job.copy()
        yield final

    # ------------------------------------------------------------------ controls
    def pause(self, session: Session) -> None:
        """A GPU call cannot wait for the user: nothing to do (the panels hide Pause)."""

    def resume(self, session: Session) -> None:
        """See pause."""

    def cancel(self, session: Session) -> bool:
        """Ask the session's running GPU job to stop; False when none runs."""
        with self._tokens_lock:
            token = self._tokens.get(session.id)
        if token is None:
            return False
        token.set()
        return True

    def _drop_token(self, session: Session, token: CancelToken) -> None:
        with self._tokens_lock:
            if self._tokens.get(session.id) is token:
                del self._tokens[session.id]
        token.discard()
