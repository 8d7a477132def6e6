"""The page: the views on the left (Viser iframe, streamed render, 3D model), the panels on the right; and launch.

Cross-panel refresh has one place: `sync`. After every action that may change the scene, the selection or the
view (and twice a second from a timer, which catches clicks made in Viser, SAM tasks and jobs that finish),
`sync` compares the session's revision with what this page last showed and sends the cheap parts at once (the
count, parts, history, scene facts); `sync_stream` then re-renders the streamed view, only while the Render tab
is shown (a CPU render of a big scene takes a while, and the count must not wait for it).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import gradio as gr

from . import scenes
from .config import AppConfig
from .context import AppContext
from .edit_panel import build_edit_panel, job_outputs
from .history_panel import build_history_panel, history_html
from .mask_panel import build_mask_panel, mask_summary
from .masking import Masking
from .model_panel import build_model_panel
from .render_panel import LARGE_CSS, build_render_panel, render_stream, slider_angles
from .scene_panel import build_scene_panel, info_markdown
from .session import Session, SessionRegistry

log = logging.getLogger(__name__)

SYNC_EVERY_S = 0.5
VISER_HEIGHT = 560
CSS = """
#history-list li.current { font-weight: bold; }
#model3d canvas { background: #ffffff !important; }
""" + LARGE_CSS


def viser_iframe(host_header: str | None, port: int) -> str:
    """The iframe that embeds this session's Viser server, on the host name the browser used for the page."""
    host = (host_header or "127.0.0.1").rsplit(":", 1)[0] if host_header and not host_header.startswith("[") \
        else (host_header or "127.0.0.1")
    if host.startswith("[") and "]" in host:  # IPv6 literal [::1]:7860
        host = host[: host.index("]") + 1]
    return (f'<iframe id="viser-iframe" data-port="{port}" src="http://{host}:{port}/" allow="fullscreen" '
            f'title="3D view" style="width:100%;height:{VISER_HEIGHT}px;border:0;border-radius:8px"></iframe>')


def connect(config: AppConfig, registry: SessionRegistry, masking: Masking | None = None, *, worker=None,
            runner=None) -> AppContext:
    """The app's context: one engine worker (`worker`, else a new one autosaving under the workspace), the link
    that shows its state in the sessions, the model choice, and the runner of the app's mode (`runner`: a
    factory `(link, models) -> Runner`, for tests)."""
    from .engine_link import EngineLink
    from .models import ModelChoice
    from .runners import make_runner

    if worker is None:
        from engine.worker import EngineWorker

        loader = None
        if getattr(config, "space", False):  # one copy of each model per process, shared with the GPU calls
            from .runners.gpu_calls import shared_loader as loader
        worker = EngineWorker(workspace=Path(config.workspace) / "autosave", model_loader=loader)
    masking = masking or Masking(str(config.sam_checkpoint) if getattr(config, "sam_checkpoint", None) else None)
    link = EngineLink(registry, worker)
    models = ModelChoice(config.model)
    ctx = AppContext(config, registry, link, models,
                     runner(link, models) if runner is not None else make_runner(config, link, models), masking)
    if masking.tasks is None:
        masking.tasks = link  # SAM clicks and lifting run as tasks on the engine thread
    masking.models = models  # text selection reads the session's model, the one Edit and Generate use
    return ctx


def build_app(config: AppConfig, *, registry: SessionRegistry | None = None, worker=None,
              masking: Masking | None = None) -> tuple[gr.Blocks, AppContext]:
    """The Gradio Blocks of the editor (not launched) and its context."""
    masking = masking or Masking(str(config.sam_checkpoint) if config.sam_checkpoint else None)
    if registry is None:
        registry = SessionRegistry(
            lambda: scenes.default_scene(config.scene), Path(config.workspace), ttl_s=config.session_ttl_s,
            max_viewers=config.max_viewers,
            viewer_factory=_viewer_factory(config, masking) if config.use_viser else None,
        )
    ctx = connect(config, registry, masking, worker=worker)

    with gr.Blocks(title="Splat part editor", fill_width=True) as demo:
        gr.Markdown("### Part-level editing of 3D Gaussian splats — select a part, describe the change, watch it")
        shown_key = gr.State(None)  # what this page's streamed view last rendered: (revision, view, tint)
        state_key = gr.State(None)  # the session revision (and Edit-panel epoch) this page last showed
        ctx.shared["shown_key"] = shown_key
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Tabs():
                    view_tabs = []
                    if config.use_viser:
                        with gr.Tab("3D view", id="tab-viser") as viser_tab:
                            viser_frame = gr.HTML(elem_id="viser-frame")
                        view_tabs.append(viser_tab)
                    with gr.Tab("Render", id="tab-render") as render_tab:
                        build_render_panel(ctx)
                    view_tabs.append(render_tab)
                    if not config.use_viser:
                        from .model3d_panel import build_model3d_tab

                        build_model3d_tab(ctx)
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Mask", id="tab-mask"):
                        build_mask_panel(ctx)
                    with gr.Tab("Edit", id="tab-edit"):
                        build_edit_panel(ctx)
                    with gr.Tab("History & export", id="tab-history"):
                        build_history_panel(ctx)
                    with gr.Tab("Scene", id="tab-scene"):
                        build_scene_panel(ctx)
                    with gr.Tab("Model", id="tab-model"):
                        build_model_panel(ctx)

        sh = ctx.shared
        edit_outputs = list(sh["edit_outputs"])
        sync_outputs = [state_key, sh["mask_info"], sh["part_select"], sh["parts_shown"], sh["history_html"],
                        sh["scene_info"], sh["mask_threshold"], sh["edit_model"], sh["stream_tint"], sh["mask_cancel"],
                        sh["azimuth"], sh["elevation"], *edit_outputs]

        def sync(last_key, part_value, request: gr.Request):
            session = ctx.session(request)
            with session.lock:
                key = (session.revision, session.job_epoch, session.tint)
                epoch, job = session.job_epoch, session.job
            if key == last_key:
                return (gr.skip(),) * len(sync_outputs)
            fresh_job = last_key is None or last_key[1] != epoch  # a new scene: the Edit panel starts over
            edit = job_outputs(job, session) if fresh_job else (gr.skip(),) * len(edit_outputs)
            angles = slider_angles(session) if fresh_job else (gr.skip(), gr.skip())  # a new scene's fresh view
            return (key, mask_summary(session), *sh["parts_update"](session, part_value), history_html(session),
                    info_markdown(session), session.threshold, sh["edit_model_text"](session), session.tint,
                    gr.update(visible=session.mask_task.active), *angles, *edit)

        def sync_stream(last_key, shown: bool, request: gr.Request):
            session = ctx.session(request)
            with session.lock:
                session.stream_visible = bool(shown)
                key = (session.revision, session.view, session.tint)
            if key == last_key or not shown:
                return gr.skip(), gr.skip()
            return key, render_stream(session)

        # Whether the streamed view is on screen, read in the browser when the event fires (a hidden tab's
        # image has no layout box); the server renders it only then.
        stream_shown = gr.Checkbox(value=False, visible=False)
        shown_js = ("(key) => { const el = document.querySelector('#stream-view');"
                    " return [key, !!(el && el.getClientRects().length)]; }")
        stream_outputs = [shown_key, sh["stream_image"]]
        quick = dict(show_progress="hidden", api_visibility="private", concurrency_limit=None)
        stream_event = dict(fn=sync_stream, inputs=[shown_key, stream_shown], outputs=stream_outputs, js=shown_js,
                            show_progress="hidden", api_visibility="private")
        for event in ctx.change_events:
            event.then(sync, [state_key, sh["part_select"]], sync_outputs, **quick).then(**stream_event)
        timer = gr.Timer(SYNC_EVERY_S)
        timer.tick(sync, [state_key, sh["part_select"]], sync_outputs, **quick).then(**stream_event)
        for tab in view_tabs:
            tab.select(**stream_event)

        def on_load(request: gr.Request):
            session = ctx.session(request)
            frame = ""
            if config.use_viser:
                viewer = ctx.registry.ensure_viewer(session)
                frame = (viser_iframe(request.headers.get("host"), viewer.port) if viewer is not None else
                         "<p>The 3D view is busy (too many sessions); use the Render tab.</p>")
            describe = sh["describe_model"](session)
            with session.lock:
                job = session.job
                key = (session.revision, session.job_epoch, session.tint)
                stream_key = (session.revision, session.view, session.tint)
            outputs = [key, mask_summary(session), *sh["parts_update"](session), history_html(session),
                       info_markdown(session), session.threshold, sh["edit_model_text"](session), session.tint,
                       gr.update(visible=session.mask_task.active), *slider_angles(session), *job_outputs(job, session),
                       stream_key,
                       render_stream(session), *describe,
                       sh["saved_choices"](request)]
            return ([frame] if config.use_viser else []) + outputs

        load_outputs = ([viser_frame] if config.use_viser else []) + sync_outputs + stream_outputs + [
            sh["model_status"], sh["model_spec"], sh["restore_select"]]
        demo.load(on_load, None, load_outputs, api_visibility="private")

        def on_unload(request: gr.Request):
            """The tab closed or reloaded: free its viewer port and memory (a running job is cancelled)."""
            session_id = getattr(request, "session_hash", None)
            if session_id:
                ctx.link.forget(session_id)
                ctx.registry.close(session_id)

        demo.unload(on_unload)
    return demo, ctx


def _viewer_factory(config: AppConfig, masking: Masking):
    def make(session: Session):
        from .viewer import SessionViewer

        def report(fn):
            def gesture(event) -> None:
                try:
                    fn(session, event)
                except (ValueError, OSError) as exc:  # shown in the viewer's panel (Viser has no error dialog)
                    with session.lock:  # and under the page's count, until the next change
                        session.notice = str(exc)
                        session.revision += 1
                    session.viewer.set_status(f"⚠️ {exc}")

            return gesture

        viewer = SessionViewer(host=config.host, port=config.viser_port,
                               on_click=report(masking.apply_click), on_rect=report(masking.apply_rect))
        viewer.tint_checkbox.value = session.tint

        def tint_changed(_) -> None:  # the Viser box and the Render tab's box are one setting
            with session.lock:
                if session.tint != bool(viewer.tint_checkbox.value):
                    session.tint = bool(viewer.tint_checkbox.value)
                    session.revision += 1

        viewer.tint_checkbox.on_update(tint_changed)
        return viewer

    return make


def serve_address(config: AppConfig, environ) -> tuple[str, int]:
    """(host, port) to bind. A real Space (SPACE_ID set) must listen on every interface (its proxy connects from
    outside the container); `--space` run locally keeps `--host` (loopback by default) as the README promises.
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which Spaces set, win in space mode."""
    host, port = config.host, config.port
    if config.space:
        default_host = "0.0.0.0" if environ.get("SPACE_ID") else config.host
        host = environ.get("GRADIO_SERVER_NAME", default_host)
        port = int(environ.get("GRADIO_SERVER_PORT", port))
    return host, port


def launch(config: AppConfig) -> None:
    """Build and serve the app until interrupted."""
    import os

    demo, ctx = build_app(config)
    host, port = serve_address(config, os.environ)
    demo.queue(default_concurrency_limit=8)
    _start_reaper(ctx)
    ctx.link.worker.warm_up()  # the renderer's first-use compilation, before anyone presses Run
    # Read the default scene and probe the model while the server starts, so the first page is quick.
    threading.Thread(target=ctx.registry.base_bundle, name="preload-scene", daemon=True).start()
    spec = ctx.models.default_spec
    if config.space and ctx.models.status_of(spec)["state"] in ("available", "loaded"):
        from .runners.gpu_calls import preload_gpu_model

        preload_gpu_model(spec)  # before serving: the GPU workers inherit the loaded model
    demo.launch(
        server_name=host, server_port=port, share=config.share, max_file_size=int(config.max_upload_mb * 1_000_000),
        allowed_paths=[str(Path(config.workspace).resolve())], css=CSS, show_error=True,
    )


def _start_reaper(ctx: AppContext) -> None:
    def loop() -> None:
        while True:
            threading.Event().wait(60)
            try:
                for session_id in ctx.registry.reap_idle():
                    ctx.link.forget(session_id)  # the worker's history of it too, not only the page's side
            except Exception:  # noqa: BLE001
                log.exception("closing idle sessions failed")

    threading.Thread(target=loop, name="session-reaper", daemon=True).start()
