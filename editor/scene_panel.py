"""The Scene panel: open a scene file (any format engine.io reads) or go back to the default; scene facts.

Opening a file replaces the session's scene, clears its selection and restarts its history; the upload size is
capped (by Gradio for the transfer, and here again with a message naming the limit).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from . import backend
from .context import AppContext
from .session import Session


def info_markdown(session: Session) -> str:
    with session.lock:
        info = backend.scene_info(session.bundle)
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
    return "\n".join(rows)


def build_scene_panel(ctx: AppContext) -> None:
    exts = backend.readable_extensions()
    upload = gr.File(
        label=f"Open a scene ({', '.join(exts)}; up to {ctx.config.max_upload_mb:g} MB)",
        file_types=sorted({e if e.count(".") == 1 else "." + e.rsplit(".", 1)[-1] for e in exts}),
        elem_id="scene-upload",
    )
    with gr.Row():
        default = gr.Button("Open the default scene", size="sm", elem_id="scene-default")
    info = gr.Markdown(elem_id="scene-info")
    with gr.Accordion("Restore an autosaved session", open=False):
        saved = gr.Dropdown(choices=[], label="Autosaved sessions (newest first)", elem_id="restore-select",
                            allow_custom_value=True)
        with gr.Row():
            refresh = gr.Button("Refresh list", size="sm")
            restore = gr.Button("Restore", size="sm", variant="primary", elem_id="restore-run")
    ctx.shared.update(scene_info=info, restore_select=saved)

    def saved_choices(request: gr.Request):
        live = {s.id for s in ctx.registry.sessions()}
        choices = ctx.jobs.saved_sessions(exclude=live)
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    refresh.click(saved_choices, None, saved, api_name="saved_sessions")
    ctx.shared["saved_choices"] = saved_choices

    def do_restore(source: str | None, request: gr.Request) -> str:
        session = ctx.session(request)
        if not source:
            raise gr.Error("choose an autosaved session first")
        try:
            ctx.jobs.restore(session, source)
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc
        return info_markdown(session)

    ctx.changed(restore.click(do_restore, saved, info, api_name="restore_session"))

    def open_file(path: str | None, request: gr.Request) -> str:
        session = ctx.session(request)
        if not path:
            return info_markdown(session)
        size_mb = Path(path).stat().st_size / 1e6
        if size_mb > ctx.config.max_upload_mb:
            raise gr.Error(f"{Path(path).name} is {size_mb:.1f} MB; the limit is {ctx.config.max_upload_mb:g} MB")
        if session.job.active:
            raise gr.Error("an edit is running; cancel it before opening another scene")
        try:
            bundle = backend.open_scene(path)
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc
        ctx.jobs.load_scene(session, bundle)
        return info_markdown(session)

    ctx.changed(upload.upload(open_file, upload, info, api_name="open_scene"))

    def open_default(request: gr.Request) -> str:
        session = ctx.session(request)
        if session.job.active:
            raise gr.Error("an edit is running; cancel it before opening another scene")
        ctx.jobs.load_scene(session, ctx.registry.base_bundle())
        return info_markdown(session)

    ctx.changed(default.click(open_default, None, info, api_name="open_default"))
