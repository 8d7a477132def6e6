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
import queue
import threading
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..drawing import render_view

PREVIEW_SIZE = 256  # the previews (and before/after images) are rendered at PREVIEW_SIZE² from the session's view


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
class GpuProgress:
    """One step of a GPU job, streamed from the GPU process (small and picklable)."""

    step: int
    total: int
    elapsed_s: float
    eta_s: float
    losses: dict[str, float]
    num_gaussians: int
    preview: np.ndarray | None = None  # [PREVIEW_SIZE, PREVIEW_SIZE, 3] uint8, every preview_every steps
    renderer: str = ""
    renderer_reason: str = ""


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


_MODELS: dict[str, Any] = {}  # device -> this process's engine.worker.ModelCache (the worker's own cache kind)


def _model(spec: str):
    """(device, guidance model for `spec`): CUDA when this process has it; loaded once per process (a GPU call
    runs one job at a time, so it waits for the load)."""
    from engine.worker import ModelCache

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache = _MODELS.setdefault(str(device), ModelCache(device=device))
    return device, cache.get(spec)


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


class _Finished:
    def __init__(self, value) -> None:
        self.value = value


def _streamed(work: Callable, cancel_path: str | None) -> Iterator:
    """Run `work(emit, should_stop)` on a thread of this process and yield what it emits, then a _Finished with
    what it returned. should_stop() is true once this generator is closed (the consumer stopped: ZeroGPU closes
    it when the app ends the stream) or once the cancel file exists; the closing waits for the current step."""
    items: queue.Queue = queue.Queue()
    closed = threading.Event()

    def should_stop() -> bool:
        return closed.is_set() or (cancel_path is not None and os.path.exists(cancel_path))

    def target() -> None:
        try:
            items.put(_Finished(work(items.put, should_stop)))
        except BaseException as exc:  # noqa: BLE001 - handed to the generator, which re-raises it
            items.put(exc)

    thread = threading.Thread(target=target, name="gpu-job", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, _Finished):
                return
    finally:
        closed.set()
        thread.join()


def error_text(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run_edit_on_gpu(scene, mask, config, cameras, cancel_path: str | None = None) -> Iterator:
    """Edit `scene` ([N] `mask`) with engine.edit.run_edit (on CUDA when this process has it): what a Space
    decorates with spaces.GPU. A generator: a GpuProgress per step (with a preview of the scene so far from
    `cameras`, the session's view, every config.preview_every steps), then one GpuResult (CPU tensors). It stops
    before the next step once closed or once `cancel_path` exists. Errors come back as GpuResult.error (ZeroGPU
    would replace an exception's message with its class name)."""
    from engine.edit import run_edit

    try:
        device, model = _model(config.model)
    except Exception as exc:  # noqa: BLE001
        yield GpuResult(error=f"cannot load the model {config.model}: {error_text(exc)}")
        return
    renderer, reason = _renderer_here(device)
    view = cameras.to(device if renderer == "gsplat" else "cpu")

    def work(emit, should_stop):
        def on_event(event) -> None:
            preview = None
            if event.scene is not None:
                shown = event.scene.to(device) if renderer == "gsplat" else event.scene
                preview = render_view(shown, view)
            emit(GpuProgress(event.step, event.total, event.elapsed_s, event.eta_s, dict(event.losses),
                             event.num_gaussians, preview, renderer, reason))

        return run_edit(scene, mask, config, model, on_event=on_event, should_stop=should_stop)

    try:
        with closing(_streamed(work, cancel_path)) as items:
            for item in items:
                if not isinstance(item, _Finished):
                    yield item
                    continue
                result = item.value
                losses = {k: float(v) for k, v in result.losses.items()}
                if result.cancelled:
                    yield GpuResult(steps_done=result.steps_done, cancelled=True, device=str(device),
                                    renderer=renderer, renderer_reason=reason, losses=losses)
                else:
                    yield GpuResult(result.scene.detach().to("cpu"), result.mask.detach().cpu(), result.steps_done,
                                    device=str(device), renderer=renderer, renderer_reason=reason, losses=losses)
    except Exception as exc:  # noqa: BLE001 - the message survives the trip back
        yield GpuResult(error=error_text(exc), device=str(device), renderer=renderer, renderer_reason=reason)


def run_generate_on_gpu(initial, config, cancel_path: str | None = None) -> Iterator:
    """Generate `config.prompt` with engine.generate.run_generate (on CUDA when available), starting from
    `initial` (a scene, or None for `config.init`): what a Space decorates with spaces.GPU. A generator like
    run_edit_on_gpu: GpuProgress per step (the generation's own preview every preview_every steps, as a local
    generation shows it), then a GpuResult whose scene is the result (None when cancelled)."""
    from engine.generate import check_generate_config, initial_scene, run_generate

    try:
        check_generate_config(config)
        start = initial if initial is not None else initial_scene(config)
        device, model = _model(config.model)
    except Exception as exc:  # noqa: BLE001
        yield GpuResult(error=error_text(exc))
        return
    renderer, reason = _renderer_here(device)
    steps = [0]

    def work(emit, should_stop):
        def on_event(event) -> None:
            steps[0] = event.step
            emit(GpuProgress(event.step, event.total, event.elapsed_s, event.eta_s, dict(event.losses),
                             event.num_gaussians, event.preview, renderer, reason))

        return run_generate(config, model, on_event=on_event, should_stop=should_stop, initial=start)

    try:
        with closing(_streamed(work, cancel_path)) as items:
            for item in items:
                if not isinstance(item, _Finished):
                    yield item
                    continue
                if steps[0] < config.steps:
                    yield GpuResult(steps_done=steps[0], cancelled=True, device=str(device), renderer=renderer,
                                    renderer_reason=reason)
                else:
                    yield GpuResult(item.value.detach().to("cpu"), None, steps[0], device=str(device),
                                    renderer=renderer, renderer_reason=reason)
    except Exception as exc:  # noqa: BLE001
        yield GpuResult(error=error_text(exc), device=str(device), renderer=renderer, renderer_reason=reason)
