"""Hugging Face Space mode: one port (no Viser), the streamed view plus gr.Model3D, GPU work under spaces.GPU.

A Space exposes a single port, so the per-session Viser servers are not started (AppConfig.use_viser is false);
the Render tab (editor.render_panel) is the interactive view and the "3D model" tab shows the current scene as a
splat .ply in Gradio's own viewer. The Space's front-matter is at the top of the project's README.md.

How ZeroGPU runs a GPU call, and what this module does about each fact:

- A GPU exists only inside a function decorated with `spaces.GPU`, called from a Gradio request handler, and
  that function runs in a **forked worker process**: its arguments and results are pickled, and what it changes
  in globals never comes back. So `run_edit_on_gpu` / `run_generate_on_gpu` take everything as plain CPU
  arguments (scene, mask, config, the session's view cameras, a cancel-file path) and send back CPU data only;
  the model cache (`_MODELS`) lives in whichever process runs them.
- A decorated **generator** streams each yield back to the app. Both functions are generators: every step they
  yield a small `GpuProgress` (step, ETA, losses; every `preview_every` steps also a 256² uint8 preview rendered
  there from the session's view cameras), and last a `GpuResult` with the result. The request handlers
  (`stream_gpu_edit`, `stream_gpu_generate`) consume that stream into `session.job`, so the Edit panel and the
  Scene panel show it exactly as they show a local job, and adopt the result through the worker as ONE history
  entry (JobRunner.adopt_result): undo, redo, export and autosave behave as after a local job.
- **Cancel** crosses the process boundary two ways. The Cancel button sets the session's `CancelToken`: the
  handler closes the GPU generator at the next record it receives (ZeroGPU then sets its worker's stop event
  and closes our generator there, which stops the edit before its next step), and the token also creates a
  small file that the GPU function checks before every step (the forked worker shares the file system). The
  session's scene is unchanged either way. Closing the page (Gradio closing the handler) closes the stream too.
- `duration` (ZeroGPU's default is 60 s; quota is GPU minutes per day) is a function of the inputs:
  `edit_duration` / `generate_duration` from `estimate_edit_seconds` / `estimate_generate_seconds` (see COSTS
  below); a job whose estimate exceeds GPU_MAX_DURATION_S is refused before it runs, saying what to lower.

Which renderer the GPU process uses is decided there once (engine/render/availability.py) and reported in each
record; `renderer_report()` puts it in the Model tab.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import numpy as np
import torch

from . import backend
from .context import AppContext
from .session import JobStatus, Session

FRONTMATTER_PATH = Path(__file__).resolve().parent.parent / "README.md"
PREVIEW_SIZE = 256  # the previews (and before/after images) are rendered at PREVIEW_SIZE² from the session's view
POLL_S = 0.2  # the handlers pass progress to the page at most this often (previews always)

# --------------------------------------------------------------------------------------------- GPU time
GPU_MAX_DURATION_S = 120
"""The longest GPU call this app asks ZeroGPU for; an estimate above it is refused before anything runs. Kept
well under a day's free quota so that a visitor gets several edits, not one."""

SPACE_EDIT_STEPS = 100  # the Edit panel's default steps in Space mode (≈ 55 s estimated for SD 1.5, 256 px)
SPACE_GENERATE_STEPS = 150  # the Scene panel's default generation steps in Space mode (≈ 35 s estimated)


@dataclass(frozen=True)
class GpuCosts:
    """Per-step costs the duration estimate is built from. NOT measured on a Space's GPU (no GPU was available
    to this work); where each figure comes from:

    - model_step_s: the guidance part of one step (VAE encode, UNet, backward through them). 0.06 s for an SD
      1.5-family model is the project's target for a 512² SDS step on an H100 (bench/edit.py's goal; the README's
      "On a GPU cluster"); the loss resizes every render to the model's native 512², so it does not grow with
      the render resolution. DDS runs the UNet for two prompts (x2); RoMaP adds anchor images (x1.3). The
      closed-form prior has no network: a few ms.
    - render: forward + backward of one view, per megapixel and per million Gaussians. The torch (CPU)
      rasterizer's figures are measured on this project's 2-core CI machine (the default robot, 33,839
      Gaussians: 0.15 s at 128², 0.20 s at 256²); it is what a ZeroGPU Space renders with, since gsplat from PyPI
      cannot compile there. gsplat's are an estimate (two orders of magnitude faster).
    - call_overhead_s: starting the GPU worker, moving the model to the GPU, the first steps' warm-up.
    - safety: the steps' estimate is multiplied by this (ZeroGPU ends a call that outlives its duration).
    """

    model_step_s: dict = field(default_factory=lambda: {"diffusers": 0.06, "closed-form": 0.003})
    method_factor: dict = field(default_factory=lambda: {"sds": 1.0, "dds": 2.0, "romap": 1.3})
    render_s_per_mpix: dict = field(default_factory=lambda: {"torch": 0.9, "gsplat": 0.02})
    render_s_per_mgauss: dict = field(default_factory=lambda: {"torch": 4.0, "gsplat": 0.05})
    call_overhead_s: dict = field(default_factory=lambda: {"diffusers": 15.0, "closed-form": 3.0})
    safety: float = 1.5


COSTS = GpuCosts()


def _model_kind(spec: str) -> str:
    from engine.guidance import parse_model_spec

    try:
        parsed = parse_model_spec(spec)
    except ValueError:
        return "diffusers"
    return "closed-form" if parsed.is_closed_form or parsed.kind not in ("hub", "local") else "diffusers"


def _render_s(renderer: str, pixels: float, gaussians: float) -> float:
    name = renderer if renderer in COSTS.render_s_per_mpix else "torch"
    return COSTS.render_s_per_mpix[name] * pixels / 1e6 + COSTS.render_s_per_mgauss[name] * gaussians / 1e6


def estimate_edit_seconds(num_gaussians: int, config, renderer: str | None = None) -> float:
    """GPU seconds to request for an edit: overhead + safety x steps x (model step + the step's views rendered
    forward and backward at resolution² + a share of a 256² preview every preview_every steps)."""
    renderer = renderer or expected_gpu_renderer()
    kind = _model_kind(config.model)
    step = COSTS.model_step_s[kind] * COSTS.method_factor.get(config.method, 1.0)
    step += _render_s(renderer, int(config.batch_size) * config.resolution ** 2, num_gaussians)
    if config.preview_every:
        step += 0.5 * _render_s(renderer, PREVIEW_SIZE ** 2, num_gaussians) / max(int(config.preview_every), 1)
    return COSTS.call_overhead_s[kind] + COSTS.safety * int(config.steps) * step


def estimate_generate_seconds(config, num_start: int | None = None, renderer: str | None = None) -> float:
    """GPU seconds to request for a generation: as `estimate_edit_seconds`, at the final resolution and with the
    Gaussian count doubled (densification grows it)."""
    renderer = renderer or expected_gpu_renderer()
    kind = _model_kind(config.model)
    gaussians = 2 * (num_start if num_start is not None else int(config.num_gaussians))
    step = COSTS.model_step_s[kind] * COSTS.method_factor.get(config.method, 1.0)
    step += _render_s(renderer, int(config.batch_size) * config.resolution ** 2, gaussians)
    if config.preview_every:
        step += 0.5 * _render_s(renderer, int(config.preview_resolution) ** 2, gaussians) / max(int(config.preview_every), 1)
    return COSTS.call_overhead_s[kind] + COSTS.safety * int(config.steps) * step


def check_gpu_time(seconds: float, steps: int, what: str) -> int:
    """The duration to request (whole seconds), or ValueError when `seconds` exceeds GPU_MAX_DURATION_S."""
    if seconds > GPU_MAX_DURATION_S:
        fits = max(1, int(steps * GPU_MAX_DURATION_S / seconds))
        raise ValueError(
            f"this {what} would need about {math.ceil(seconds)} s of GPU time, more than the {GPU_MAX_DURATION_S} s "
            f"one GPU call may use here: lower Steps (about {fits} fit at these settings) or the render resolution")
    return max(1, math.ceil(seconds))


def edit_duration(scene, mask, config, cameras=None, cancel_path=None) -> int:
    """spaces.GPU's `duration` for run_edit_on_gpu (called with the same arguments), capped at the maximum."""
    return min(GPU_MAX_DURATION_S, max(1, math.ceil(estimate_edit_seconds(len(scene), config))))


def generate_duration(initial, config, cancel_path=None) -> int:
    """spaces.GPU's `duration` for run_generate_on_gpu, capped at the maximum."""
    seconds = estimate_generate_seconds(config, None if initial is None else len(initial))
    return min(GPU_MAX_DURATION_S, max(1, math.ceil(seconds)))


def gpu_wrap(fn: Callable, duration: Callable | int | None = None) -> Callable:
    """`spaces.GPU(duration=...)(fn)` when the `spaces` package is importable, else `fn` unchanged (outside
    ZeroGPU hardware the real package returns `fn` unchanged too)."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


# --------------------------------------------------------------------------------------------- renderer
_GPU_RENDERER: dict[str, str] = {}  # what the last GPU call reported: {"name", "reason"} (this process's view)


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


# --------------------------------------------------------------------------------------------- GPU functions
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


_MODELS: dict[tuple[str, str], Any] = {}  # (model spec, device) -> guidance model, per process


def _model(spec: str):
    """(device, guidance model for `spec`): CUDA when this process has it; loaded once per process."""
    from engine.guidance import load_guidance

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    key = (spec, str(device))
    if key not in _MODELS:
        _MODELS[key] = load_guidance(spec, device=device)
    return device, _MODELS[key]


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


def _error_text(exc: BaseException) -> str:
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
        yield GpuResult(error=f"cannot load the model {config.model}: {_error_text(exc)}")
        return
    renderer, reason = _renderer_here(device)
    view = cameras.to(device if renderer == "gsplat" else "cpu")

    def work(emit, should_stop):
        def on_event(event) -> None:
            preview = None
            if event.scene is not None:
                shown = event.scene.to(device) if renderer == "gsplat" else event.scene
                preview = backend.render_view(shown, view)
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
        yield GpuResult(error=_error_text(exc), device=str(device), renderer=renderer, renderer_reason=reason)


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
        yield GpuResult(error=_error_text(exc))
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
        yield GpuResult(error=_error_text(exc), device=str(device), renderer=renderer, renderer_reason=reason)


# --------------------------------------------------------------------------------------------- cancel
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


_TOKENS: dict[str, CancelToken] = {}  # session id -> the token of its running GPU job
_TOKENS_LOCK = threading.Lock()


def cancel_gpu_job(session_id: str) -> bool:
    """Ask the session's running GPU edit or generation to stop (Cancel button); False when none runs."""
    with _TOKENS_LOCK:
        token = _TOKENS.get(session_id)
    if token is None:
        return False
    token.set()
    return True


def _new_token(session: Session) -> CancelToken:
    token = CancelToken(session.workspace / "gpu-jobs")
    with _TOKENS_LOCK:
        _TOKENS[session.id] = token
    return token


def _drop_token(session: Session, token: CancelToken) -> None:
    with _TOKENS_LOCK:
        if _TOKENS.get(session.id) is token:
            del _TOKENS[session.id]
    token.discard()


# --------------------------------------------------------------------------------------------- handlers
def stream_gpu_edit(ctx: AppContext, session: Session, settings, gpu_edit: Callable) -> Iterator[JobStatus]:
    """Run one edit through `gpu_edit` (run_edit_on_gpu under spaces.GPU) inside the calling request handler,
    yielding the session's job status as the GPU stream reports steps and previews. Bad input, or a job longer
    than GPU_MAX_DURATION_S, raises ValueError before anything runs."""
    with session.lock:
        config = ctx.jobs.checked_edit_config(session, settings)
        seconds = check_gpu_time(estimate_edit_seconds(len(session.scene), config), config.steps, "edit")
        scene, mask, view = session.scene, session.selection, session.view
        cameras = view.cameras(PREVIEW_SIZE, PREVIEW_SIZE)
        session.job = JobStatus(state="running", total=config.steps, started_at=time.time(),
                                message=f"waiting for a GPU (up to {seconds} s requested)",
                                before=backend.render_view(scene, cameras))
        session.job_view = view
        token = _new_token(session)
    yield _snapshot(session)

    def adopt(result: GpuResult) -> str:
        ctx.jobs.adopt_result(session, result.scene, result.mask, f"edit ({config.method}): {config.prompt}")
        with session.lock:
            session.job.preview = backend.render_view(session.scene, view.cameras(PREVIEW_SIZE, PREVIEW_SIZE))
            session.job.preview_count += 1
        return f"{result.steps_done} steps on {result.device} ({result.renderer} renderer)"

    stream = gpu_edit(scene.clone(), mask.clone(), config, cameras, str(token.path))
    yield from _consume(session, stream, token, adopt)


def stream_gpu_generate(ctx: AppContext, session: Session, settings, gpu_generate: Callable) -> Iterator[JobStatus]:
    """Run one text-to-3D generation through `gpu_generate` (run_generate_on_gpu under spaces.GPU) inside the
    calling request handler; the result opens as the session's scene in ONE history entry (all-zero mask), named
    like the worker path's. Yields the job status as the stream reports; bad input raises ValueError first."""
    from .jobs import INIT_CURRENT

    config = ctx.jobs.checked_generate_config(session, settings)
    with session.lock:
        if session.job.active:
            raise ValueError("an edit or generation is already running in this session")
        initial = session.scene.clone() if settings.init == INIT_CURRENT else None
        seconds = check_gpu_time(estimate_generate_seconds(config, None if initial is None else len(initial)),
                                 config.steps, "generation")
        view = session.view
        session.job = JobStatus(state="running", total=config.steps, started_at=time.time(),
                                message=f"waiting for a GPU (up to {seconds} s requested)",
                                before=backend.render_view(session.scene, view.cameras(PREVIEW_SIZE, PREVIEW_SIZE)))
        session.job_view = view
        token = _new_token(session)
    yield _snapshot(session)

    def adopt(result: GpuResult) -> str:
        scene = result.scene
        ctx.jobs.adopt_result(session, scene, torch.zeros(len(scene)), f"generate ({config.method}): {config.prompt}",
                              name=f"generated: {config.prompt.strip()[:60]}", up=config.up)
        with session.lock:
            session.job_view = session.view
            session.job.preview = backend.render_view(session.scene, session.view.cameras(PREVIEW_SIZE, PREVIEW_SIZE))
            session.job.preview_count += 1
        return f"{result.steps_done} steps, {len(scene)} Gaussians on {result.device} ({result.renderer} renderer)"

    stream = gpu_generate(initial, config, str(token.path))
    yield from _consume(session, stream, token, adopt)


def _consume(session: Session, stream, token: CancelToken, adopt: Callable[[GpuResult], str]) -> Iterator[JobStatus]:
    """Read the GPU stream into session.job (yielding a status at most every POLL_S, and for every preview) until
    its GpuResult, a Cancel (the stream is closed at once) or an error; then adopt the result or leave the session
    as it was. Closing this generator (the page went away) closes the stream too."""
    result: GpuResult | None = None
    state = message = ""
    shown = 0.0
    try:
        for record in stream:
            if isinstance(record, GpuResult):
                result = record
                break
            _apply(session, record)
            if token.is_set():
                break
            now = time.monotonic()
            if record.preview is not None or now - shown >= POLL_S:
                shown = now
                yield _snapshot(session)
            if token.is_set():
                break
    except Exception as exc:  # noqa: BLE001 - the page shows the error; the session is unchanged
        state, message = "error", _error_text(exc)
    finally:
        stream.close()  # ends the GPU call (ZeroGPU stops its worker's generator at its next yield)
        _drop_token(session, token)
    if result is not None and result.renderer:
        _GPU_RENDERER.update(name=result.renderer, reason=result.renderer_reason)
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
        with session.lock:
            session.job.step = result.steps_done
        try:
            state, message = "done", adopt(result)
        except Exception as exc:  # noqa: BLE001
            state, message = "error", _error_text(exc)
    yield _end_job(session, state, message)


def _apply(session: Session, record: GpuProgress) -> None:
    if record.renderer:
        _GPU_RENDERER.update(name=record.renderer, reason=record.renderer_reason)
    with session.lock:
        job = session.job
        job.step, job.total, job.eta_s = record.step, record.total, record.eta_s
        job.started_at = time.time() - record.elapsed_s  # the GPU's own clock (the wait for a GPU excluded)
        if job.message.startswith("waiting for a GPU"):
            job.message = ""
        if "loss" in record.losses:
            job.losses.append((record.step, float(record.losses["loss"])))
        if "psnr_ideal" in record.losses:
            job.psnr_ideal = float(record.losses["psnr_ideal"])
        if record.preview is not None:
            job.preview = record.preview
            job.preview_count += 1
        session.revision += 1


def _end_job(session: Session, state: str, message: str) -> JobStatus:
    """Record how the session's GPU job ended; returns the final status."""
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
