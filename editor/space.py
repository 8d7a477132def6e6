"""Hugging Face Space mode: one port (no Viser), the streamed view plus gr.Model3D, GPU work under spaces.GPU.

A Space exposes a single port, so the per-session Viser servers are not started (AppConfig.use_viser is false);
the Render tab (editor.render_panel) is the interactive view and the "3D model" tab shows the current scene as a
splat .ply in Gradio's own viewer. The Space's front-matter is at the top of the project's README.md.

On ZeroGPU hardware a GPU exists only inside a function decorated with `spaces.GPU` and called from a Gradio
request handler, and ZeroGPU may run that function in another process. So in Space mode the edit does not run
on the engine worker's thread: the Edit panel's Run handler calls `run_edit_on_gpu` (wrapped once per app by
`gpu_wrap`, which is a no-op where the `spaces` package is missing) with everything it needs as CPU arguments;
it loads the model (cached per process), edits on CUDA when there is one and returns CPU tensors. The handler
then records the result through the worker as ONE history entry (JobRunner.adopt_result), so undo, redo,
export and autosave behave as after a worker edit. Cancel sets a per-session flag the edit polls before each
step; that works when the function runs in this process (tests, a Space with a dedicated GPU) but a ZeroGPU
child process does not see it. No live previews stream from inside the GPU function: the page shows "running
on the GPU" and then the result. The Scene panel's "Generate from text" goes the same way (`run_generate_on_gpu`,
`stream_gpu_generate`): its result opens as the session's scene in one history entry with an all-zero mask.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import torch

from . import backend
from .context import AppContext
from .session import JobStatus, Session

GPU_DURATION_S = 300  # longest edit a ZeroGPU slot is requested for
FRONTMATTER_PATH = Path(__file__).resolve().parent.parent / "README.md"


def gpu_wrap(fn: Callable, duration: int = GPU_DURATION_S) -> Callable:
    """`spaces.GPU(duration=...)(fn)` when the `spaces` package is importable, else `fn` unchanged."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


_MODELS: dict[tuple[str, str], Any] = {}  # (model spec, device) -> guidance model, per process
_CANCELLED: set[str] = set()  # session ids whose GPU edit should stop before its next step
_CANCEL_LOCK = threading.Lock()


def _model(spec: str):
    """(device, guidance model for `spec`): CUDA when this process has it; loaded once per process."""
    from engine.guidance import load_guidance

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    key = (spec, str(device))
    if key not in _MODELS:
        _MODELS[key] = load_guidance(spec, device=device)
    return device, _MODELS[key]


def run_edit_on_gpu(scene, mask, config, session_id: str = ""):
    """Edit `scene` ([N] `mask`) with engine.edit.run_edit on CUDA when available; what a Space decorates with
    spaces.GPU. Takes and returns CPU data only: (scene, mask [N'], summary dict)."""
    from engine.edit import run_edit

    device, model = _model(config.model)
    result = run_edit(scene, mask, config, model, should_stop=lambda: session_id in _CANCELLED)
    summary = {"cancelled": result.cancelled, "steps_done": result.steps_done, "device": str(device),
               "losses": {k: float(v) for k, v in result.losses.items()}}
    return result.scene.detach().to("cpu"), result.mask.detach().cpu(), summary


def run_generate_on_gpu(initial, config, session_id: str = ""):
    """Generate `config.prompt` with engine.generate.run_generate on CUDA when available, starting from `initial`
    (a scene, or None for `config.init`); what a Space decorates with spaces.GPU. CPU data in and out:
    (scene, summary dict). A cancelled run returns the scene so far with summary["cancelled"] set."""
    from engine.generate import check_generate_config, initial_scene, run_generate

    check_generate_config(config)
    start = initial if initial is not None else initial_scene(config)
    device, model = _model(config.model)
    steps = [0]

    def count_steps(event) -> None:
        steps[0] = event.step

    scene = run_generate(config, model, on_event=count_steps, should_stop=lambda: session_id in _CANCELLED,
                         initial=start)
    summary = {"cancelled": steps[0] < config.steps, "steps_done": steps[0], "device": str(device),
               "gaussians": len(scene)}
    return scene.detach().to("cpu"), summary


def cancel_gpu_edit(session_id: str) -> None:
    """Ask the session's running spaces.GPU edit or generation to stop before its next step."""
    with _CANCEL_LOCK:
        _CANCELLED.add(session_id)


def stream_gpu_edit(ctx: AppContext, session: Session, settings, gpu_edit: Callable) -> Iterator[JobStatus]:
    """Run one edit through `gpu_edit` (run_edit_on_gpu under spaces.GPU) inside the calling request handler;
    yields the session's job status before and after. Bad input raises ValueError before anything runs."""
    with session.lock:
        config = ctx.jobs.checked_edit_config(session, settings)
        scene, mask = session.scene, session.selection
        view = session.view
        session.job = JobStatus(state="running", total=config.steps, message="running on the GPU",
                                started_at=time.time(), before=backend.render_view(scene, view.cameras(256, 256)))
        session.job_view = view
    with _CANCEL_LOCK:
        _CANCELLED.discard(session.id)
    yield _snapshot(session)
    try:
        new_scene, new_mask, summary = gpu_edit(scene.clone(), mask.clone(), config, session.id)
        if summary["cancelled"]:
            state, message = "cancelled", f"cancelled after {summary['steps_done']} steps"
        else:
            ctx.jobs.adopt_result(session, new_scene, new_mask, f"edit ({config.method}): {config.prompt}")
            state, message = "done", f"{summary['steps_done']} steps on {summary['device']}"
        with session.lock:
            session.job.step = summary["steps_done"]
            if "loss" in summary["losses"]:
                session.job.losses.append((summary["steps_done"], summary["losses"]["loss"]))
            session.job.preview = backend.render_view(session.scene, view.cameras(256, 256))
            session.job.preview_count += 1
    except Exception as exc:  # noqa: BLE001 - the page shows the error; the session is unchanged
        state, message = "error", (str(exc).splitlines() or [type(exc).__name__])[0]
    yield _end_job(session, state, message)


def stream_gpu_generate(ctx: AppContext, session: Session, settings, gpu_generate: Callable) -> Iterator[JobStatus]:
    """Run one text-to-3D generation through `gpu_generate` (run_generate_on_gpu under spaces.GPU) inside the
    calling request handler; the result opens as the session's scene in ONE history entry (all-zero mask), named
    like the worker path's. Yields the job status before and after; bad input raises ValueError first."""
    from .jobs import INIT_CURRENT

    config = ctx.jobs.checked_generate_config(session, settings)
    with session.lock:
        if session.job.active:
            raise ValueError("an edit or generation is already running in this session")
        initial = session.scene.clone() if settings.init == INIT_CURRENT else None
        view = session.view
        session.job = JobStatus(state="running", total=config.steps, message="running on the GPU",
                                started_at=time.time(), before=backend.render_view(session.scene, view.cameras(256, 256)))
        session.job_view = view
    with _CANCEL_LOCK:
        _CANCELLED.discard(session.id)
    yield _snapshot(session)
    try:
        scene, summary = gpu_generate(initial, config, session.id)
        if summary["cancelled"]:
            state, message = "cancelled", f"cancelled after {summary['steps_done']} steps"
        else:
            ctx.jobs.adopt_result(session, scene, torch.zeros(len(scene)),
                                  f"generate ({config.method}): {config.prompt}",
                                  name=f"generated: {config.prompt.strip()[:60]}", up=config.up)
            state, message = "done", f"{summary['steps_done']} steps, {len(scene)} Gaussians on {summary['device']}"
        with session.lock:
            session.job.step = summary["steps_done"]
            session.job_view = session.view
            session.job.preview = backend.render_view(session.scene, session.view.cameras(256, 256))
            session.job.preview_count += 1
    except Exception as exc:  # noqa: BLE001 - the page shows the error; the session is unchanged
        state, message = "error", (str(exc).splitlines() or [type(exc).__name__])[0]
    yield _end_job(session, state, message)


def _end_job(session: Session, state: str, message: str) -> JobStatus:
    """Clear the session's cancel flag and record how its GPU job ended; returns the final status."""
    with _CANCEL_LOCK:
        _CANCELLED.discard(session.id)
    with session.lock:
        session.job.state, session.job.message, session.job.eta_s = state, message, None
        session.revision += 1
    return _snapshot(session)


def _snapshot(session: Session) -> JobStatus:
    with session.lock:
        job = session.job
        snapshot = JobStatus(**{k: getattr(job, k) for k in job.__dataclass_fields__})
        snapshot.losses = list(job.losses)
    return snapshot


def build_model3d_tab(ctx: AppContext) -> None:
    """A tab with gr.Model3D showing the session's current scene (written as a 3DGS .ply on demand, turned to
    the web viewers' -y-up convention from the scene's up; the History tab exports the scene as it is)."""
    with gr.Tab("3D model", id="tab-model3d"):
        model3d = gr.Model3D(label="Current scene (splat .ply)", elem_id="model3d", height=480,
                             clear_color=(1.0, 1.0, 1.0, 1.0))
        refresh = gr.Button("Show the current scene", size="sm", elem_id="model3d-refresh")

    def show(request: gr.Request) -> str:
        session = ctx.session(request)
        with session.lock:
            scene, up = session.scene, session.up
        path = session.workspace / "model3d" / f"scene-{time.strftime('%H%M%S')}-{session.revision}.ply"
        return str(backend.save_scene(backend.for_web_viewer(scene, up), path, up=backend.WEB_VIEWER_UP))

    refresh.click(show, None, model3d, api_name="model3d")
