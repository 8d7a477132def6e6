"""Start the real app in-process on a free port (for gradio_client, load and browser tests)."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from engine.scene import GaussianScene, random_scene


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_scene(num: int = 400, seed: int = 0) -> GaussianScene:
    """A compact random scene whose Gaussians overlap into a visible blob (quick to render and edit)."""
    return random_scene(num, seed=seed, extent=0.4, scale_range=(0.03, 0.08))


@dataclass
class RunningApp:
    url: str
    demo: object
    ctx: object
    scene_path: Path | None


@contextlib.contextmanager
def running_app(tmp_path: Path, *, scene: GaussianScene | None = None, use_default_scene: bool = False,
                **config_overrides):
    """The app on 127.0.0.1:<free port>, serving `scene` (saved as .ply) or the bundled default scene."""
    from editor.config import AppConfig
    from editor.page import CSS, build_app
    from engine.io import save

    scene_path = None
    if not use_default_scene:
        scene_path = tmp_path / "start.ply"
        save(scene if scene is not None else small_scene(), scene_path)
    port = free_port()
    config = AppConfig(port=port, viser_port=free_port(), scene=scene_path, workspace=tmp_path / "workspace",
                       **config_overrides)
    demo, ctx = build_app(config)
    demo.queue(default_concurrency_limit=8)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=int(config.max_upload_mb * 1_000_000), allowed_paths=[str(config.workspace.resolve())],
                css=CSS)  # the app's own style sheet, as editor.page.serve launches it
    try:
        yield RunningApp(f"http://127.0.0.1:{port}/", demo, ctx, scene_path)
    finally:
        demo.close()
        ctx.registry.close_all()
        ctx.link.worker.shutdown(timeout=10)


def wait_mask_task(session, timeout: float = 120.0):
    """(the session's mask task once it is no longer active, the set of progress messages seen meanwhile)."""
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        with session.lock:
            task = session.mask_task
            seen.add(task.message)
            if not task.active:
                return task, seen
        time.sleep(0.01)
    raise TimeoutError("the mask task did not end")
