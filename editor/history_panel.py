"""History & export: undo / redo, the list of edits and mask changes, downloads of the scene, mask and a video.

The history lives in the engine worker (exact parameters per entry); this panel shows its labels and sends
undo/redo. Exports are written under the session's workspace folder and handed to the browser as files.
"""

from __future__ import annotations

import html
import time

import gradio as gr

from .context import AppContext
from .session import Session

EXPORT_CHOICES = [
    ("3DGS .ply", "ply"),
    ("antimatter15 .splat", "splat"),
    ("Niantic .spz (spec frame)", "spz"),
    ("Niantic .spz, raw frame (splat-transform, Niantic's converter)", "spz-raw"),
    ("PlayCanvas .sog", "sog"),
    ("SuperSplat .compressed.ply", "compressed.ply"),
    ("Mask .npy", "mask"),
    ("Turntable .mp4", "mp4"),
]


def history_html(session: Session) -> str:
    with session.lock:
        labels, cursor = list(session.history_labels), session.history_cursor
    if not labels:
        return '<ol id="history-list"><li><i>no history yet</i></li></ol>'
    items = []
    for i, label in enumerate(labels):
        text = html.escape(label)
        if i == cursor:
            items.append(f'<li class="current" data-current="1"><b>{text}</b> ◀</li>')
        elif i > cursor:
            items.append(f'<li style="opacity:.5">{text}</li>')
        else:
            items.append(f"<li>{text}</li>")
    return f'<ol id="history-list" data-cursor="{cursor}" data-count="{len(labels)}">{"".join(items)}</ol>'


def build_history_panel(ctx: AppContext) -> None:
    with gr.Row():
        undo = gr.Button("↶ Undo", elem_id="hist-undo")
        redo = gr.Button("↷ Redo", elem_id="hist-redo")
    listing = gr.HTML(elem_id="history-box")
    with gr.Row():
        fmt = gr.Dropdown(EXPORT_CHOICES, value="ply", label="Export", elem_id="export-format")
        export = gr.Button("Export", variant="primary", elem_id="export-run")
    exported = gr.File(label="Download", interactive=False, elem_id="export-file")
    ctx.shared.update(history_html=listing)

    def step(fn):
        def handler(request: gr.Request) -> str:
            session = ctx.session(request)
            try:
                fn(session)
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc
            return history_html(session)

        return handler

    ctx.changed(undo.click(step(ctx.link.undo), None, listing, api_name="undo"))
    ctx.changed(redo.click(step(ctx.link.redo), None, listing, api_name="redo"))

    def do_export(kind: str, request: gr.Request) -> str:
        session = ctx.session(request)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = session.workspace / "exports"
        try:
            if kind == "mask":
                return str(ctx.masking.save_mask(session, folder / f"mask-{stamp}.npy"))
            if kind == "mp4":
                from . import drawing

                with session.lock:
                    scene, up = session.scene, session.up
                return str(drawing.turntable(scene, folder / f"turntable-{stamp}.mp4", up=up))
            if kind == "spz-raw":
                return str(ctx.link.export(session, folder / f"scene-{stamp}.spz", spz_frame="raw"))
            return str(ctx.link.export(session, folder / f"scene-{stamp}.{kind}"))
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc

    export.click(do_export, fmt, exported, api_name="export")
