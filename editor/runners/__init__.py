"""How a job (an edit, a generation) runs, behind one `Runner` protocol the panels call.

- `local.LocalRunner`: on the engine worker of this process (pause, resume, cancel); the default.
- `zerogpu.ZeroGpuRunner`: in Space mode, inside a `spaces.GPU` call from the request (cancel, no pause).

Both turn their progress records into the session's JobStatus through the one `editor.job_status.apply_progress`,
check their input with `editor.settings` before anything runs, and put the result into the worker's history as
one entry, so undo, redo, export and autosave do not care which ran it. A panel calls `ctx.runner.run_edit(...)`
and iterates the statuses; it shows Pause only when `ctx.runner.can_pause`.

Mask tasks (SAM clicks, select by text) are not jobs: they run on the engine worker in both modes
(editor.engine_link.start_mask_task); see the README's Space section for why.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from ..job_status import JobStatus

VIEW_SIZE = 256  # a job's before / preview / after images: this size, drawn from the session's view (both runners)


def view_cameras(view):
    """The one camera a job's images are drawn from: the session's view (an editor.orbit.OrbitView)."""
    return view.cameras(VIEW_SIZE, VIEW_SIZE)


def view_image(scene, view) -> np.ndarray:
    """[VIEW_SIZE, VIEW_SIZE, 3] uint8: `scene` from the session's `view`."""
    from ..drawing import render_view

    return render_view(scene, view_cameras(view))


def show_after(session) -> None:
    """After a job's result entered the history and the session shows it: its image from the job's view (the
    view the job started from; a generated object's own fresh view). The mask tint goes off, so both views show
    the result itself rather than the selection's colour painted over it (the tint boxes turn it back on)."""
    with session.lock:
        session.job.preview = view_image(session.scene, getattr(session, "job_view", session.view))
        session.job.preview_count += 1
    session.set_tint(False)


class Runner(Protocol):
    can_pause: bool

    def run_edit(self, session, settings) -> Iterator[JobStatus]:
        """Start an edit of the session's selection and yield its status until it ends. The first `next()`
        raises ValueError (nothing started) for bad input or a model that cannot load."""

    def run_generate(self, session, settings) -> Iterator[JobStatus]:
        """Start a text-to-3D generation whose result replaces the session's scene; statuses as run_edit."""

    def pause(self, session) -> None: ...

    def resume(self, session) -> None: ...

    def cancel(self, session) -> None: ...


def make_runner(config, link, models) -> Runner:
    """The runner the app's mode calls for: ZeroGPU in Space mode, else the local worker."""
    if getattr(config, "space", False):
        from .zerogpu import ZeroGpuRunner

        return ZeroGpuRunner(link, models)
    from .local import LocalRunner

    return LocalRunner(link, models)
