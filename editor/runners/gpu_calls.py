"""What runs inside a ZeroGPU call: the edit and the generation as generators that stream small, picklable
progress records back to the app, and this process's model cache and renderer report.

How ZeroGPU runs a GPU call, and what this module does about each fact:

- A GPU exists only inside a function decorated with `spaces.GPU`, called from a Gradio request handler, and that
  function runs in a **forked worker process**: its arguments and results are pickled, and what it changes in
  globals never comes back. So `run_edit_on_gpu` / `run_generate_on_gpu` take everything as plain CPU arguments
  (scene, mask, config, the session's view cameras, a cancel-file path) and send back CPU data only; the model
  cache lives in whichever process runs them.
- A decorated **generator** streams each yield back to the app. Both functions are generators: every step they
  yield a small `GpuProgress` (step, ETA, losses; every `preview_every` steps also a 256² uint8 preview rendered
  there from the session's view cameras), and last a `GpuResult` with the result (editor.runners.zerogpu reads
  the stream).
- They stop before the next step once the stream is closed (ZeroGPU closes our generator when the app ends the
  stream) or once the cancel file exists (the forked worker shares the file system, not the memory).

Which renderer the GPU process uses is decided there once (engine/render/availability.py) and reported in each
record; `renderer_report()` puts it in the Model tab.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch



_GPU_RENDERER: dict[str, str] = {}  # what the last GPU call reported: {"name", "reason"} (this process's view)


def record_renderer(name: str, reason: str) -> None:
    """What a GPU call reported it rendered with (the Model tab and the next duration estimate read it)."""
    if name:
        _GPU_RENDERER.update(name=name, reason=reason)


def _zero_gpu() -> bool:
    try:
        from spaces.config import Config
    except ImportError:
        return False
    return bool(getattr(Config, "zero_gpu", False))


def expected_gpu_renderer() -> str:
    """The renderer the next GPU call will likely use: what the last one reported; else this process's choice
    when the GPU function runs here (no ZeroGPU); else torch (PyPI's gsplat cannot compile on ZeroGPU)."""
    if _GPU_RENDERER.get("name"):
        return _GPU_RENDERER["name"]
    if not _zero_gpu():
        from engine.render.availability import renderer_choice

        return renderer_choice().name
    return "torch"


def renderer_report(space: bool) -> str:
    """Markdown for the Model tab: which renderer `auto` uses here and why, and in Space mode what the GPU
    function reported."""
    lines = []
    if space and _zero_gpu():
        lines.append("**Renderer in this process:** decided inside the ZeroGPU worker (no GPU here)")
    else:
        from engine.render.availability import renderer_choice

        lines.append(f"**Renderer:** {renderer_choice().describe()}")
    if space:
        if _GPU_RENDERER:
            lines.append(f"**GPU jobs render with:** {_GPU_RENDERER['name']} — {_GPU_RENDERER['reason']}")
        else:
            lines.append("**GPU jobs render with:** reported by the first GPU edit or generation")
    return "  \n".join(lines)


def _renderer_here(device: torch.device) -> tuple[str, str]:
    from engine.render.availability import renderer_choice

    if device.type != "cuda":
        return "torch", f"no CUDA device in the GPU process (on {device})"
    choice = renderer_choice()
    return choice.name, choice.reason


@dataclass
class GpuStarted:
    """The first record of a GPU job: where it runs and which renderer draws there (and why)."""

    device: str
    renderer: str
    renderer_reason: str


@dataclass
class GpuResult:
    """The last record of a GPU job: the CPU result (None when cancelled or failed)."""

    scene: Any = None  # GaussianScene
    mask: torch.Tensor | None = None  # [N'] (edits)
    steps_done: int = 0
    cancelled: bool = False
    error: str = ""
    device: str = ""
    renderer: str = ""
    renderer_reason: str = ""
    losses: dict[str, float] = field(default_factory=dict)
    row_sources: torch.Tensor | None = None  # [N'] an edit's row map (engine.edit.EditResult.row_sources)


_MODELS: dict[str, Any] = {}  # device -> this process's engine.worker.ModelCache (the worker's own cache kind)


def _model(spec: str):
    """(device, guidance model for `spec`): CUDA when this process has it; loaded once per process (a GPU call
    runs one job at a time, so it waits for the load)."""
    from engine.worker import ModelCache

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = _MODELS.setdefault(str(device), ModelCache(device=device))
    return device, cache.get(spec)


def shared_loader(spec: str, device=None):
    """A model loader for the app's engine worker in Space mode: the model this process's GPU calls use (one
    copy per process; on ZeroGPU the forked GPU workers inherit it), so text selection does not load the
    editing model a second time."""
    return _model(spec)[1]


def preload_gpu_model(spec: str) -> bool:
    """Load `spec` into this process's model cache now (ZeroGPU's advice: load models at start-up — on ZeroGPU
    `torch.cuda` is available to the main process and the forked GPU workers inherit what it loaded, so no GPU
    call spends its seconds on loading). A model that cannot load (offline, no weights) is logged and left to
    the first job, which reports it; returns whether the model is cached."""
    import logging

    try:
        _model(spec)
    except Exception as exc:  # noqa: BLE001 - the app starts anyway; the first edit says what is missing
        logging.getLogger(__name__).warning("not preloading %s: %s", spec, (str(exc).splitlines() or [""])[0])
        return False
    return True


def error_text(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_edit_on_gpu(job, cancel_path: str | None = None) -> Iterator:
    """Run an engine.worker.run.EditJob (on CUDA when this process has it): what a Space decorates with
    spaces.GPU. A generator: a GpuStarted, then engine.worker.run.Progress after every step (the preview drawn
    from the job's preview cameras, the session's view; the scene so far is not sent), then one GpuResult (CPU
    tensors). It stops before the next step once closed or once `cancel_path` exists. Errors come back as
    GpuResult.error (ZeroGPU would replace an exception's message with its class name)."""
    yield from _run_on_gpu(job, cancel_path)


def run_generate_on_gpu(job, cancel_path: str | None = None) -> Iterator:
    """Run an engine.worker.run.GenerateJob (on CUDA when available): what a Space decorates with spaces.GPU.
    Records as run_edit_on_gpu's; the GpuResult's scene is the generated one (None when cancelled)."""
    yield from _run_on_gpu(job, cancel_path)


def _run_on_gpu(job, cancel_path: str | None) -> Iterator:
    from engine.worker import EditJob, Progress, run_job

    try:
        device, model = _model(job.model)
    except Exception as exc:  # noqa: BLE001
        yield GpuResult(error=f"cannot load the model {job.model}: {error_text(exc)}")
        return
    renderer, reason = _renderer_here(device)
    yield GpuStarted(str(device), renderer, reason)
    if isinstance(job, EditJob) and renderer == "gsplat":  # the previews are drawn where the scene is
        job = EditJob(job.scene, job.mask, job.config, job.preview_cameras.to(device))

    def should_stop() -> bool:
        return cancel_path is not None and os.path.exists(cancel_path)

    done = dict(device=str(device), renderer=renderer, renderer_reason=reason)
    try:
        for record in run_job(job, model, should_stop=should_stop):  # closing this generator closes run_job
            if isinstance(record, Progress):
                yield record.without_scene()
            elif record.cancelled:
                yield GpuResult(steps_done=record.steps_done, cancelled=True, **done,
                                losses={k: float(v) for k, v in getattr(record, "losses", {}).items()})
            else:
                mask = getattr(record, "mask", None)
                rows = getattr(record, "row_sources", None)
                yield GpuResult(record.scene.detach().to("cpu"), None if mask is None else mask.detach().cpu(),
                                record.steps_done, **done,
                                losses={k: float(v) for k, v in getattr(record, "losses", {}).items()},
                                row_sources=None if rows is None else rows.cpu())
    except Exception as exc:  # noqa: BLE001 - the message survives the trip back
        yield GpuResult(error=error_text(exc), **done)
