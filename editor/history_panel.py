"""History & export: undo / redo, the list of edits and mask changes, downloads of the scene, mask and a video.

The history lives in the engine worker (exact parameters per entry); this panel shows its labels and sends
undo/redo. Exports are written under the session's workspace folder and handed to the browser as files.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import gradio as gr

from . import drawing
from .context import AppContext
from .session import Session

EXPORT_CHOICES = [
    ("3DGS .ply", "ply"),
    ("antimatter15 .splat", "splat"),
    ("Niantic .spz (opens upright in SuperSplat, splat-transform)", "spz"),
    ("Niantic .spz, RUB frame (as the spz README says)", "spz-spec"),
    ("PlayCanvas .sog", "sog"),
    ("SuperSplat .compressed.ply", "compressed.ply"),
    ("Mask .npy", "mask"),
    ("Turntable .mp4", "mp4"),
]


SCENE_SUFFIXES = (".compressed.ply", ".ply", ".splat", ".spz", ".sog", ".ksplat", ".json", ".glb", ".gltf", ".obj",
                  ".off", ".stl", ".pcd", ".xyz")


def export_path(folder: Path, source: str, kind: str) -> Path:
    """Where an export of kind `kind` goes: named after the opened file (`guitar.spz` -> `guitar-edited.ply`) so
    downloads are recognisable; a second export of the same kind gets `-2`, `-3`, ... instead of overwriting."""
    stem = source
    for suffix in SCENE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "scene"
    tail, ext = {"mask": ("mask", "npy"), "mp4": ("turntable", "mp4")}.get(kind, ("edited", kind.split("-")[0]))
    path = folder / f"{stem}-{tail}.{ext}"
    count = 2
    while path.exists():
        path, count = folder / f"{stem}-{tail}-{count}.{ext}", count + 1
    return path


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
    with gr.Group(visible=False) as turntable_box:  # shown while "Turntable .mp4" is chosen
        with gr.Row():
            seconds = gr.Slider(*drawing.TURNTABLE_SECONDS, value=2.0, step=0.5, label="Turntable length (s)",
                                elem_id="turntable-seconds")
            fps = gr.Slider(*drawing.TURNTABLE_FPS, value=24, step=1, label="Frames per second",
                            elem_id="turntable-fps")
            size = gr.Slider(*drawing.TURNTABLE_SIZE, value=384, step=16, label="Size (px, square)",
                             elem_id="turntable-size")
        gr.Markdown("One orbit around the scene's up axis; every frame is rendered here, so long or large "
                    "videos take a while (frames = length × frames per second).", elem_id="turntable-note")
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

    fmt.change(lambda kind: gr.update(visible=kind == "mp4"), fmt, turntable_box, queue=False)

    def do_export(kind: str, length: float, rate: float, pixels: float, request: gr.Request) -> str:
        session = ctx.session(request)
        with session.lock:
            source = session.bundle.name if session.bundle is not None else "scene"
        path = export_path(session.workspace / "exports", source, kind)
        try:
            if kind == "mask":
                return str(ctx.masking.save_mask(session, path))
            if kind == "mp4":
                frames = drawing.turntable_frames(length, rate, pixels)  # refuses bad options before rendering
                with session.lock:
                    scene, up = session.scene, session.up
                return str(drawing.turntable(scene, path, frames=frames, fps=int(rate), size=int(pixels), up=up))
            return str(ctx.link.export(session, path, spz_frame="spec" if kind == "spz-spec" else "raw"))
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc

    export.click(do_export, [fmt, seconds, fps, size], exported, api_name="export")
