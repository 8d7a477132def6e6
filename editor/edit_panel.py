"""The Edit panel: prompt and settings, Run / Pause / Cancel, progress with ETA, loss plot, live preview,
before/after.

Run hands the settings to the app's runner (editor.runners: the local engine worker, or a spaces.GPU call in Space
mode) and streams the session's job status to the page until the job ends, so the page (and a gradio_client call
of `run_edit`) sees every preview. Pause and Cancel are separate events that run while Run is streaming; Pause is
shown only where the runner can pause. The runner owns the job; this panel only shows it. Space mode starts with
fewer steps (SPACE_EDIT_STEPS), so a default edit fits a free GPU quota.
"""

from __future__ import annotations

import html
import itertools
import time

import gradio as gr
import pandas as pd

from engine.guidance.methods import DEFAULT_SCHEDULE, dropdown_choices, method_line, schedule_choices

from .context import AppContext
from .job_status import JobStatus
from .runners.gpu_time import SPACE_EDIT_STEPS
from .session import Session
from .settings import EditSettings, demo_note

METHOD_LABELS = dropdown_choices("edit")  # "SDS — one line" per method: engine/guidance/methods.py
SCHEDULE_LABELS = schedule_choices()  # "Method default", then "dreamtime — one line" per timestep schedule
# EditConfig.edit's choices, as a user reads them (the rule "auto" follows: EditConfig's docstring, README)
EDIT_KIND_CHOICES = [
    ("Auto: colour first, shape only if colour alone cannot reach the prompt", "auto"),
    ("Colour & material only (geometry and count kept exactly)", "appearance"),
    ("Shape too (move, grow, densify inside the region)", "shape"),
]


def progress_html(job: JobStatus) -> str:
    """A progress bar with step, speed and ETA; data-* attributes let tests read the numbers."""
    total = max(job.total, 1)
    pct = 100.0 * min(job.step, total) / total
    parts = [f"{job.state}"]
    if job.total:
        parts.append(f"step {job.step}/{job.total}")
    if job.started_at is not None and job.step:
        elapsed = max(1e-6, time.time() - job.started_at)
        parts.append(f"{job.step / elapsed:.1f} it/s")
    if job.state in ("running", "paused") and job.step:
        # the first steps pay one-off costs: no estimate until a few more have run (engine EtaClock)
        parts.append("ETA estimating…" if job.eta_s is None else f"ETA {format_seconds(job.eta_s)}")
    first_line, _, rest = (job.message or "").partition("\n")
    if first_line:
        parts.append(html.escape(first_line))
    if job.psnr_ideal is not None:
        parts.append(f"PSNR vs ideal {job.psnr_ideal:.1f} dB")
    colour = {"error": "#c0392b", "cancelled": "#7f8c8d", "done": "#27ae60"}.get(job.state, "#2e86de")
    bar = (
        f'<div id="edit-progress" data-state="{job.state}" data-step="{job.step}" data-total="{job.total}" '
        f'data-previews="{job.preview_count}" data-psnr="{"" if job.psnr_ideal is None else f"{job.psnr_ideal:.2f}"}" '
        f'style="border:1px solid #ccc;border-radius:6px;height:26px;position:relative;overflow:hidden">'
        f'<div style="width:{pct:.1f}%;height:100%;background:{colour};opacity:.35"></div>'
        f'<span style="position:absolute;left:8px;top:3px;font-size:13px;white-space:nowrap">'
        f'{" · ".join(parts)}</span></div>'
    )
    if job.state == "error" and job.message:  # the whole message, not cut to the bar's one line
        bar += (f'<div id="edit-error" style="color:#c0392b;white-space:pre-wrap;font-size:13px;margin-top:4px">'
                f"{html.escape(job.message)}</div>")
    return bar


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def loss_frame(job: JobStatus) -> pd.DataFrame:
    """Typed columns (an untyped empty frame would make the plot treat its axes as categories). Before the
    first step the frame holds one point at (0, 0) with a zero x range, not an empty table: the plot library
    warns in the browser console about an empty data set."""
    steps = [s for s, _ in job.losses] or [0]
    values = [v for _, v in job.losses] or [0.0]
    return pd.DataFrame({"step": pd.Series(steps, dtype="int64"), "loss": pd.Series(values, dtype="float64")})


def loss_update(job: JobStatus):
    """The loss plot, labelled with the PSNR against the ideal edit when the edit reports one."""
    label = "Loss" if job.psnr_ideal is None else f"Loss · PSNR vs ideal {job.psnr_ideal:.1f} dB"
    return gr.update(value=loss_frame(job), label=label)


def job_outputs(job: JobStatus, session: Session):
    """(progress, loss plot, preview, before, after, run/pause/cancel button states) for a status snapshot."""
    running = job.state in ("queued", "running", "paused")
    preview = session.image_file("preview", job.preview)
    return (
        progress_html(job),
        loss_update(job),
        preview,
        session.image_file("before", job.before),
        preview if job.state == "done" else None,
        gr.update(interactive=not running),
        gr.update(interactive=running, value="Resume" if job.state == "paused" else "Pause"),
        gr.update(interactive=running),
    )


def model_line(ctx: AppContext, session: Session) -> str:
    """Which model Run uses in this session, and its state (the Model tab changes it)."""
    status = ctx.models.status(session)
    icon = {"loaded": "🟢", "available": "🟢", "loading": "🟡", "not downloaded": "🟡"}.get(status["state"], "🔴")
    return f"Model: {icon} `{status['spec']}` — {status['state']} (change it in the Model tab)"


def run_outputs(ctx: AppContext, session: Session, first: JobStatus, updates):
    """The Run stream's outputs: job_outputs plus the model line, re-sent whenever it changes (the model is
    "loading" until the first step, then "loaded": the page's sync only re-reads it when the scene changes)."""
    shown = None
    for job in itertools.chain([first], updates):
        line = model_line(ctx, session)
        yield (*job_outputs(job, session), gr.skip() if line == shown else line)
        shown = line


def build_edit_panel(ctx: AppContext) -> None:
    active_model = gr.Markdown(elem_id="edit-model")
    prompt = gr.Textbox(label="Prompt (what the selected part should become)", placeholder="a red scarf",
                        elem_id="edit-prompt")
    source = gr.Textbox(label="Source prompt (what it is now; needed by DDS and DreamCatalyst, used by LUSD)", placeholder="a blue scarf",
                        elem_id="edit-source")
    with gr.Row():
        method = gr.Dropdown(METHOD_LABELS, value="sds", label="Method", elem_id="edit-method", scale=2)
        schedule = gr.Dropdown(SCHEDULE_LABELS, value=DEFAULT_SCHEDULE, label="Timestep schedule",
                               elem_id="edit-schedule")
        steps = gr.Slider(1, 2000, value=SPACE_EDIT_STEPS if ctx.config.space else 300, step=1, label="Steps",
                          elem_id="edit-steps")
    method_note = gr.Markdown(method_line("sds"), elem_id="edit-method-note")  # the method's line and defaults
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            guidance = gr.Number(value=0, label="Guidance scale (0 = method default)", elem_id="edit-guidance")
            resolution = gr.Slider(32, 1024, value=256, step=8, label="Render resolution", elem_id="edit-res")
            seed = gr.Number(value=0, precision=0, label="Seed", elem_id="edit-seed")
        with gr.Row():
            preview_every = gr.Slider(1, 100, value=5, step=1, label="Preview every N steps",
                                      elem_id="edit-preview-every")
            lr_scale = gr.Slider(0.1, 20, value=1, step=0.1, label="Learning-rate scale", elem_id="edit-lr")
            densify = gr.Checkbox(value=True, label="Densify inside the mask")
            prior_removal = gr.Checkbox(value=False, label="Gaussian prior removal (RoMaP always uses it)",
                                        elem_id="edit-prior")
        edit_kind = gr.Radio(EDIT_KIND_CHOICES, value="auto", label="What may change", elem_id="edit-kind")
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="edit-run")
        pause = gr.Button("Pause", interactive=False, elem_id="edit-pause", visible=bool(ctx.runner.can_pause))
        cancel = gr.Button("Cancel", variant="stop", interactive=False, elem_id="edit-cancel")
    note = gr.Markdown(elem_id="edit-prompt-note")  # what the closed-form demo does with the prompt
    progress = gr.HTML(progress_html(JobStatus()), elem_id="edit-progress-box")
    preview = gr.Image(label="Live preview", interactive=False, elem_id="edit-preview", height=256, format="jpeg")
    with gr.Row():
        before = gr.Image(label="Before", interactive=False, elem_id="edit-before", height=200, format="jpeg")
        after = gr.Image(label="After", interactive=False, elem_id="edit-after", height=200, format="jpeg")
    losses = gr.LinePlot(loss_frame(JobStatus()), x="step", y="loss", label="Loss", height=180,
                         elem_id="edit-loss")
    outputs = [progress, losses, preview, before, after, run, pause, cancel]
    ctx.shared.update(edit_outputs=outputs, edit_model=active_model,
                      edit_model_text=lambda session: model_line(ctx, session))

    def method_changed(method_v: str):
        """RoMaP always removes the prior: the box says so (ticked, locked) while RoMaP is chosen."""
        if method_v == "romap":
            return gr.update(value=True, interactive=False)
        return gr.update(value=False, interactive=True)

    method.input(method_changed, method, prior_removal, show_progress="hidden", api_visibility="private")
    method.change(method_line, method, method_note, show_progress="hidden", api_visibility="private")

    def prompt_note(prompt_v: str, request: gr.Request) -> str:
        return demo_note(ctx.models.spec_for(ctx.session(request)), prompt_v or "")

    for changed in (prompt.change, active_model.change):  # the prompt, or the session's model (Model tab)
        changed(prompt_note, prompt, note, show_progress="hidden", api_visibility="private")

    def start_and_stream(prompt_v, source_v, method_v, steps_v, guidance_v, res_v, seed_v, every_v, densify_v,
                         prior_v, lr_v, kind_v, schedule_v=DEFAULT_SCHEDULE, request: gr.Request = None):
        session = ctx.session(request)
        settings = EditSettings(
            prompt=prompt_v or "", source_prompt=source_v or "", method=method_v, steps=int(steps_v),
            guidance_scale=float(guidance_v) if guidance_v else None, resolution=int(res_v), seed=int(seed_v or 0),
            preview_every=int(every_v), densify=bool(densify_v), prior_removal=bool(prior_v),
            lr_scale=float(lr_v or 1.0), edit=kind_v or "auto", schedule=schedule_v,
        )
        updates = ctx.runner.run_edit(session, settings)
        try:
            last = next(updates)  # bad input or a model that cannot load: refused before anything runs
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        yield from run_outputs(ctx, session, last, updates)
        if session.job.state == "error":  # a popup with the whole message, besides the bar
            raise gr.Error(session.job.message or "the edit failed", duration=None)

    inputs = [prompt, source, method, steps, guidance, resolution, seed, preview_every, densify, prior_removal,
              lr_scale, edit_kind, schedule]  # schedule last: API callers that omit it get the method's
    ctx.changed(run.click(start_and_stream, inputs, [*outputs, active_model], api_name="run_edit",
                          concurrency_limit=None, show_progress="hidden"))

    def toggle_pause(request: gr.Request):
        session = ctx.session(request)
        if session.job.state == "paused":
            ctx.runner.resume(session)
        else:
            ctx.runner.pause(session)

    def do_cancel(request: gr.Request):
        ctx.runner.cancel(ctx.session(request))

    pause.click(toggle_pause, None, None, api_name="pause_edit", concurrency_limit=None)
    cancel.click(do_cancel, None, None, api_name="cancel_edit", concurrency_limit=None)

    def status(request: gr.Request) -> dict:
        """The job status as plain data (for API clients)."""
        job = ctx.session(request).job
        return {"state": job.state, "step": job.step, "total": job.total, "previews": job.preview_count,
                "message": job.message}

    gr.api(status, api_name="edit_status")
