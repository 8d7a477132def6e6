"""The "3D model" tab (Space mode, where no Viser port is open): gr.Model3D showing the session's current scene.

The scene is sent each time the tab opens (and on the button after a change): a blank tab that needed a click
looked broken. The file is a display copy (scenes.for_web_viewer): upright for the viewer, centred and sized so
the viewer's fixed orbit frames the whole subject; History & export writes the scene itself.
"""

from __future__ import annotations

import time

import gradio as gr

from . import scenes
from .context import AppContext


def build_model3d_tab(ctx: AppContext) -> None:
    """A tab with gr.Model3D showing the session's current scene (written as a 3DGS .ply on demand, turned to
    the web viewers' -y-up convention from the scene's up; the History tab exports the scene as it is)."""
    with gr.Tab("3D model", id="tab-model3d") as tab:
        model3d = gr.Model3D(label="Current scene (display copy, centred; export it from History & export)",
                             elem_id="model3d", height=480, clear_color=(1.0, 1.0, 1.0, 1.0))
        refresh = gr.Button("Show the current scene", size="sm", elem_id="model3d-refresh")

    def show(request: gr.Request) -> str:
        session = ctx.session(request)
        with session.lock:
            scene, up = session.scene, session.up
        path = session.workspace / "model3d" / f"scene-{time.strftime('%H%M%S')}-{session.revision}.ply"
        return str(scenes.save_scene(scenes.for_web_viewer(scene, up), path, up=scenes.WEB_VIEWER_UP))

    refresh.click(show, None, model3d, api_name="model3d")
    tab.select(show, None, model3d)
