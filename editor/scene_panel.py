"""The Scene panel: open a scene file (any format engine.io reads) or go back to the default; scene facts;
generate a new object from text (engine.generate through the app's runner — the local worker, or a spaces.GPU
call in Space mode — with its own progress bar and preview).

Opening a file replaces the session's scene, clears its selection and restarts its history; the upload size is
capped (by Gradio for the transfer, and here again with a message naming the limit).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine.guidance.methods import DEFAULT_SCHEDULE, dropdown_choices, method_line, schedule_choices

from . import scenes
from .context import AppContext
from .job_status import JobStatus
from .runners.gpu_time import SPACE_GENERATE_STEPS
from .session import Session
from .settings import INIT_CURRENT, GenerateSettings, demo_note

GENERATE_METHODS = dropdown_choices("generate")  # "SDS — one line" per method: engine/guidance/methods.py
GENERATE_INITS = [("Sphere", "sphere"), ("Ellipsoid", "ellipsoid"), ("Current scene", INIT_CURRENT)]


def info_markdown(session: Session) -> str:
    with session.lock:
        info = scenes.scene_info(session.bundle)
    lo, hi = info["bounds_min"], info["bounds_max"]
    rows = [
        f"**{info['name']}**",
        "",
        f"- Gaussians: <span id='scene-count'>{info['gaussians']:,}</span>",
        f"- SH degree: {info['sh_degree']}",
        f"- Bounds: ({', '.join(f'{v:.3f}' for v in lo)}) to ({', '.join(f'{v:.3f}' for v in hi)})",
    ]
    if info["parts"]:
        rows.append(f"- Parts: {', '.join(info['parts'])}")
    rows.append(f"- Up axis: <span id='scene-up'>{info['up']}</span> ({UP_SOURCES.get(info['up_source'], info['up_source'])})")
    return "\n".join(rows)


# How the up axis was found (engine/io/detect_up.py has the rule), as the Scene panel says it.
UP_SOURCES = {"file": "from the file", "format": "the format's convention", "geometry": "guessed from the shape",
              "user": "set here", "generated": "generated", "default": "default"}


def up_choice(session: Session) -> str:
    """The up dropdown's value for the session's scene (an axis name, or x,y,z for another direction)."""
    from engine.up import format_up

    with session.lock:
        return format_up(session.up)


def user_facing(message: str, path: str) -> str:
    """An error about an uploaded file, naming the file the user chose instead of the server's temporary
    path (Gradio stores uploads as /tmp/gradio/<hash>/<name>)."""
    name = Path(path).name
    for spelled in {str(Path(path)), str(Path(path).resolve()), path}:
        message = message.replace(spelled, name)
    return message.replace(str(Path(path).parent) + "/", "")


def build_scene_panel(ctx: AppContext) -> None:
    exts = scenes.readable_extensions()
    upload = gr.File(
        label=f"Open a scene ({', '.join(exts)}; up to {ctx.config.max_upload_mb:g} MB)",
        file_types=sorted({e if e.count(".") == 1 else "." + e.rsplit(".", 1)[-1] for e in exts}),
        elem_id="scene-upload",
    )
    spz_frame = gr.Radio([("like a .ply (SuperSplat, splat-transform, Niantic's ply-to-spz)", "raw"),
                          ("RUB, as the spz README says (converted)", "spec")], value="raw",
                         label=".spz files are stored", elem_id="scene-spz-frame",
                         info="an .spz opened upside down was written the other way: open it again with the other "
                              "choice (the header does not say which)")
    with gr.Row():
        default = gr.Button("Open the default scene", size="sm", elem_id="scene-default")
    info = gr.Markdown(elem_id="scene-info")
    from engine.up import CHOICES

    up = gr.Dropdown(list(CHOICES), value="+z", label="Up axis (orbits, edits and masks turn around it)",
                     allow_custom_value=True, elem_id="scene-up-select",
                     info="detected on load; change it if the scene lies on its side")
    with gr.Accordion("Restore an autosaved session", open=False):
        saved = gr.Dropdown(choices=[], label="Autosaved sessions (newest first)", elem_id="restore-select",
                            allow_custom_value=True)
        with gr.Row():
            refresh = gr.Button("Refresh list", size="sm")
            restore = gr.Button("Restore", size="sm", variant="primary", elem_id="restore-run")
    ctx.shared.update(scene_info=info, restore_select=saved)
    build_generate_group(ctx, info)

    def saved_choices(request: gr.Request):
        live = {s.id for s in ctx.registry.sessions()}
        choices = ctx.link.saved_sessions(exclude=live)
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    refresh.click(saved_choices, None, saved, api_name="saved_sessions")
    ctx.shared["saved_choices"] = saved_choices

    def do_restore(source: str | None, request: gr.Request) -> str:
        session = ctx.session(request)
        if not source:
            raise gr.Error("choose an autosaved session first")
        try:
            ctx.link.restore(session, source)
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc
        return info_markdown(session)

    ctx.changed(restore.click(do_restore, saved, info, api_name="restore_session"))

    def open_file(path: str | None, frame: str, request: gr.Request) -> str:
        session = ctx.session(request)
        if not path:
            return info_markdown(session)
        size_mb = Path(path).stat().st_size / 1e6
        if size_mb > ctx.config.max_upload_mb:
            raise gr.Error(f"{Path(path).name} is {size_mb:.1f} MB; the limit is {ctx.config.max_upload_mb:g} MB")
        if session.job.active:
            raise gr.Error("an edit is running; cancel it before opening another scene")
        try:
            bundle = scenes.open_scene(path, spz_frame=frame or "raw")
        except (ValueError, OSError) as exc:
            raise gr.Error(user_facing(str(exc), path)) from exc
        ctx.link.load_scene(session, bundle)
        return info_markdown(session)

    # The upload box empties after every upload (a rejected file must not stay there; the scene facts name
    # the opened one).
    ctx.changed(upload.upload(open_file, [upload, spz_frame], info, api_name="open_scene")).then(
        lambda: None, None, upload, show_progress="hidden", api_visibility="private")

    def open_default(request: gr.Request) -> str:
        session = ctx.session(request)
        if session.job.active:
            raise gr.Error("an edit is running; cancel it before opening another scene")
        ctx.link.load_scene(session, ctx.registry.base_bundle())
        return info_markdown(session)

    ctx.changed(default.click(open_default, None, info, api_name="open_default"))

    def set_up(value: str, request: gr.Request) -> str:
        from engine.up import parse_up

        session = ctx.session(request)
        try:
            axis = parse_up(value or "")
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        with session.lock:
            unchanged = max(abs(a - b) for a, b in zip(axis, session.up)) < 1e-9
        if not unchanged:
            ctx.link.set_up(session, axis)
        return info_markdown(session)

    ctx.changed(up.input(set_up, up, info, api_name="set_up"))
    # Whatever changes the scene (open, default, restore, generate) updates the info: the dropdown follows it.
    def show_up(request: gr.Request) -> str:
        return up_choice(ctx.session(request))

    info.change(show_up, None, up, api_visibility="private", show_progress="hidden")


def generate_progress_html(job: JobStatus) -> str:
    """The Edit panel's progress bar under its own element id (both panels can be on the page)."""
    from .edit_panel import progress_html

    return progress_html(job).replace('id="edit-progress"', 'id="generate-progress"', 1)


def generate_buttons(job: JobStatus) -> tuple[dict, dict]:
    """(Generate, Cancel) button states: Cancel only while a generation is queued or running, Generate only
    while none is."""
    return gr.update(interactive=not job.active), gr.update(interactive=job.active)


def build_generate_group(ctx: AppContext, info) -> None:
    """A folded group: prompt and settings, Generate / Cancel, progress and live preview. The result replaces
    the scene as one history entry (Undo brings the previous scene back)."""
    with gr.Accordion("Generate from text", open=False, elem_id="generate-group"):
        prompt = gr.Textbox(label="Prompt (the object to make)", placeholder="a ceramic mug with a blue glaze",
                            elem_id="generate-prompt")
        model = gr.Textbox(value="", elem_id="generate-model", placeholder="the session's model (Model tab)",
                           label="Model (empty: the session's model, as Edit uses; or a hub id, local folder, "
                                 "closed-form:<colour>)")
        with gr.Row():
            method = gr.Dropdown(GENERATE_METHODS, value="sds", label="Method", elem_id="generate-method")
            schedule = gr.Dropdown(schedule_choices(), value=DEFAULT_SCHEDULE, label="Timestep schedule",
                                   elem_id="generate-schedule")
            init = gr.Dropdown(GENERATE_INITS, value="sphere", label="Start from", elem_id="generate-init")
        method_note = gr.Markdown(method_line("sds"), elem_id="generate-method-note")
        with gr.Row():
            steps = gr.Slider(1, 5000, value=SPACE_GENERATE_STEPS if ctx.config.space else 500, step=1, label="Steps",
                              elem_id="generate-steps")
            seed = gr.Number(value=0, precision=0, label="Seed", elem_id="generate-seed")
        with gr.Row():
            resolution = gr.Slider(16, 1024, value=128, step=8, label="Render resolution",
                                   elem_id="generate-res")
            count = gr.Slider(100, 20000, value=2000, step=100, label="Starting Gaussians",
                              elem_id="generate-count")
        with gr.Row():
            run = gr.Button("Generate", variant="primary", elem_id="generate-run")
            cancel = gr.Button("Cancel", variant="stop", interactive=False, elem_id="generate-cancel")
        note = gr.Markdown(elem_id="generate-prompt-note")  # what the closed-form demo does with the prompt
        progress = gr.HTML(generate_progress_html(JobStatus()), elem_id="generate-progress-box")
        preview = gr.Image(label="Live preview", interactive=False, elem_id="generate-preview", height=256,
                           format="jpeg")

    def start_and_stream(prompt_v, model_v, method_v, init_v, steps_v, seed_v, res_v, count_v,
                         schedule_v=DEFAULT_SCHEDULE, request: gr.Request = None):
        session = ctx.session(request)
        settings = GenerateSettings(prompt=prompt_v or "", model=model_v or "", method=method_v,
                                    steps=int(steps_v), init=init_v, seed=int(seed_v or 0),
                                    resolution=int(res_v), num_gaussians=int(count_v), schedule=schedule_v)
        updates = ctx.runner.run_generate(session, settings)
        try:
            job = next(updates)  # bad input or a model that cannot load: refused before anything runs
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        yield generate_progress_html(job), session.image_file("generate", job.preview), gr.update(), \
            *generate_buttons(job)
        for job in updates:
            done = job.state in ("done", "cancelled", "error")
            yield (generate_progress_html(job), session.image_file("generate", job.preview),
                   info_markdown(session) if done else gr.update(), *generate_buttons(job))

    def prompt_note(prompt_v: str, model_v: str, request: gr.Request) -> str:
        from .models import normalise_colour_spec

        spec = normalise_colour_spec((model_v or "").strip()) or ctx.models.spec_for(ctx.session(request))
        return demo_note(spec, prompt_v or "", generate=True)

    for changed in (prompt.change, model.change, ctx.shared["edit_model"].change):  # the Model tab's choice too
        changed(prompt_note, [prompt, model], note, show_progress="hidden", api_visibility="private")

    method.change(method_line, method, method_note, show_progress="hidden", api_visibility="private")
    inputs = [prompt, model, method, init, steps, seed, resolution, count, schedule]  # schedule last: optional
    ctx.changed(run.click(start_and_stream, inputs, [progress, preview, info, run, cancel], api_name="generate",
                          concurrency_limit=None, show_progress="hidden"))
    def do_cancel(request: gr.Request) -> None:
        ctx.runner.cancel(ctx.session(request))

    cancel.click(do_cancel, None, None, api_name="cancel_generate", concurrency_limit=None)
