"""Hugging Face Space mode: one port (no Viser), the streamed view plus gr.Model3D, GPU work under spaces.GPU.

A Space exposes a single port, so the per-session Viser servers are not started (AppConfig.use_viser is false);
the Render tab (editor.render_panel) is the interactive view and the "3D model" tab shows the current scene as a
splat .ply in Gradio's own viewer. On ZeroGPU hardware a GPU exists only inside functions decorated with
`spaces.GPU`; `gpu_wrap` applies it to the edit job when the `spaces` package is importable (elsewhere it is a
no-op). The Space's front-matter is at the top of the project's README.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import gradio as gr

from . import backend
from .context import AppContext

GPU_DURATION_S = 300  # longest edit a ZeroGPU slot is requested for
FRONTMATTER_PATH = Path(__file__).resolve().parent.parent / "README.md"


def gpu_wrap(fn: Callable, duration: int = GPU_DURATION_S) -> Callable:
    """`spaces.GPU(duration=...)(fn)` when the `spaces` package is importable, else `fn` unchanged."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


def build_model3d_tab(ctx: AppContext) -> None:
    """A tab with gr.Model3D showing the session's current scene (written as a 3DGS .ply on demand, turned to
    the web viewers' -y-up convention; the History tab exports the scene as it is)."""
    with gr.Tab("3D model", id="tab-model3d"):
        model3d = gr.Model3D(label="Current scene (splat .ply)", elem_id="model3d", height=480,
                             clear_color=(1.0, 1.0, 1.0, 1.0))
        refresh = gr.Button("Show the current scene", size="sm", elem_id="model3d-refresh")

    def show(request: gr.Request) -> str:
        session = ctx.session(request)
        with session.lock:
            scene = session.scene
        path = session.workspace / "model3d" / f"scene-{time.strftime('%H%M%S')}-{session.revision}.ply"
        return str(backend.save_scene(backend.for_web_viewer(scene), path))

    refresh.click(show, None, model3d, api_name="model3d")
