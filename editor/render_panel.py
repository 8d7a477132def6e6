"""The streamed view: engine renders of the session's scene, moved with orbit buttons and sliders.

It is the only 3D view in a Hugging Face Space (one port, no Viser) and a second view locally. Clicking the
image is a selection gesture exactly like a click in Viser (same tools, same session mask). While the angle
sliders move it renders at low resolution; on release (and after every button) at full resolution.
"""

from __future__ import annotations

import gradio as gr

from . import drawing
from .context import AppContext
from .gestures import click_from_pixel
from .session import Session

WIDTH, HEIGHT = 512, 384
LOW_SCALE = 0.25
MAX_LARGE_SIDE = 1920  # the large view renders at the browser's size, up to this many pixels a side
# The large view covers the browser window (Gradio's own fullscreen button only enlarges the 512x384 image).
LARGE_CSS = """
#large-view-box { position: fixed; inset: 0; z-index: 1000; background: #111; padding: 8px; }
#large-view-box #large-view img { width: 100%; height: calc(100vh - 70px); object-fit: contain; }
"""


def render_stream(session: Session, *, low: bool = False) -> str:
    """The session's scene from its orbit view (mask-tinted if the session's tint is on), as an image file for
    the page; `low`: quarter size (while a slider moves)."""
    with session.lock:
        scene, mask, view, tint = session.display_scene(), session.display_mask(), session.view, session.tint
        plain = session.live is None and not session.hidden_parts  # the session's own scene object
        tinted = session.__dict__.setdefault("_tinted_views", drawing.TintedViews())
    s = LOW_SCALE if low else 1.0
    camera = view.cameras(max(8, int(WIDTH * s)), max(8, int(HEIGHT * s)))
    if tint and plain and not low:
        # A mask change seen from the same view re-colours the kept compositing map instead of rendering.
        image = tinted.image(scene, camera, mask) if mask is not None else None
        tinted.prepare(scene, camera)
        if image is not None:
            return session.image_file("stream", image)
    return session.image_file("stream", drawing.render_view(scene, camera, mask=mask, tint=tint))


def large_size(width: float, height: float) -> tuple[int, int]:
    """The large view's render size for a browser window of `width` x `height` CSS pixels (its aspect kept,
    at most MAX_LARGE_SIDE a side; a window the browser did not report falls back to 1280 x 720)."""
    w, h = (float(width or 0), float(height or 0))
    if w < 16 or h < 16:
        w, h = 1280.0, 720.0
    h = max(16.0, h - 70.0)  # the close button's row
    scale = min(1.0, MAX_LARGE_SIDE / max(w, h))
    return max(16, int(w * scale)), max(16, int(h * scale))


def render_large(session: Session, width: int, height: int) -> str:
    """The session's view at `width` x `height` (tinted like the streamed view), as an image file."""
    with session.lock:
        scene, mask, view, tint = session.display_scene(), session.display_mask(), session.view, session.tint
    return session.image_file("large", drawing.render_view(scene, view.cameras(width, height), mask=mask, tint=tint))


def selection_view(session: Session):
    """The session's view framing its selection (the Gaussians above 0.5; the whole scene when none is selected),
    from the same angles, so zooming then closes in on the selection."""
    from .orbit import OrbitView

    with session.lock:
        scene, view = session.scene, session.view
        chosen = session.selection > 0.5
        if int(chosen.sum()) > 0:
            scene = scene.subset(chosen)
        lo, hi = scene.bounding_box(quantile=0.01 if len(scene) > 200 else 0.0)
        return OrbitView.framing(lo, hi, azimuth=view.azimuth, elevation=view.elevation, up=session.up)


def slider_angles(session: Session) -> tuple[float, float]:
    """The orbit sliders' values for the session's view (sent when a new scene resets the view, so the sliders
    do not keep the old scene's angles)."""
    with session.lock:
        return session.view.azimuth, session.view.elevation


def view_key(session: Session) -> tuple:
    """What a streamed image depends on; the page keeps the key of what it shows to skip needless renders."""
    with session.lock:
        return (session.revision, session.view, session.tint)


def build_render_panel(ctx: AppContext) -> None:
    """The image, its orbit controls, and click-to-select; registers ctx.shared['stream_image'] etc."""
    image = gr.Image(
        label="Render (click to select)", interactive=False, elem_id="stream-view", height=HEIGHT,
        format="jpeg", buttons=["download"],
    )
    with gr.Column(visible=False, elem_id="large-view-box") as large_box:
        with gr.Row():
            close_large = gr.Button("✕ Close the large view", size="sm", elem_id="large-view-close")
        large_image = gr.Image(show_label=False, interactive=False, elem_id="large-view", format="jpeg",
                               buttons=["download"])
    with gr.Row():
        left = gr.Button("⟲ Turn left", size="sm", elem_id="orbit-left", min_width=40)
        right = gr.Button("⟳ Turn right", size="sm", elem_id="orbit-right", min_width=40)
        up = gr.Button("▲ Look from above", size="sm", elem_id="orbit-up", min_width=40)
        down = gr.Button("▼ Look from below", size="sm", elem_id="orbit-down", min_width=40)
        zoom_in = gr.Button("+ Zoom in", size="sm", elem_id="orbit-in", min_width=40)
        zoom_out = gr.Button("− Zoom out", size="sm", elem_id="orbit-out", min_width=40)
        reset = gr.Button("Frame", size="sm", elem_id="orbit-reset", min_width=60)
        frame_selected = gr.Button("Frame selection", size="sm", elem_id="orbit-frame-selection", min_width=60)
        large = gr.Button("Large view", size="sm", elem_id="orbit-large", min_width=60)
    with gr.Row():
        azimuth = gr.Slider(-180, 180, value=30, step=1, label="Azimuth", elem_id="orbit-azimuth")
        elevation = gr.Slider(-89, 89, value=20, step=1, label="Elevation", elem_id="orbit-elevation")
        tint = gr.Checkbox(value=True, label="Mask tint", elem_id="stream-tint")
    ctx.shared.update(stream_image=image, stream_tint=tint, azimuth=azimuth, elevation=elevation)

    def move(request: gr.Request, d_az: float = 0.0, d_el: float = 0.0, zoom: float = 1.0):
        session = ctx.session(request)
        with session.lock:
            session.view = session.view.rotated(d_az, d_el).zoomed(zoom)
            view = session.view
        return view_key(session), render_stream(session), view.azimuth, view.elevation

    def mover(d_az: float = 0.0, d_el: float = 0.0, zoom: float = 1.0):
        def handler(request: gr.Request):
            return move(request, d_az, d_el, zoom)

        return handler

    shown_key = ctx.shared["shown_key"]
    outputs = [shown_key, image, azimuth, elevation]
    common = dict(outputs=outputs, show_progress="hidden", trigger_mode="always_last", api_visibility="private")
    left.click(mover(d_az=-30), [], **common)
    right.click(mover(d_az=30), [], **common)
    up.click(mover(d_el=15), [], **common)
    down.click(mover(d_el=-15), [], **common)
    zoom_in.click(mover(zoom=0.8), [], **common)
    zoom_out.click(mover(zoom=1.25), [], **common)

    def frame(request: gr.Request):
        session = ctx.session(request)
        with session.lock:
            from .orbit import OrbitView

            lo, hi = session.scene.bounding_box(quantile=0.01 if len(session.scene) > 200 else 0.0)
            session.view = OrbitView.framing(lo, hi, up=session.up)
        return move(request)

    reset.click(frame, [], **common)

    def frame_selection(request: gr.Request):
        session = ctx.session(request)
        with session.lock:
            session.view = selection_view(session)
        return move(request)

    frame_selected.click(frame_selection, [], **common)

    window_w, window_h = gr.Number(visible=False), gr.Number(visible=False)

    def show_large(width: float, height: float, request: gr.Request):
        return gr.update(visible=True), render_large(ctx.session(request), *large_size(width, height))

    large.click(show_large, [window_w, window_h], [large_box, large_image], show_progress="minimal",
                js="(w, h) => [window.innerWidth, window.innerHeight]", api_visibility="private")
    close_large.click(lambda: gr.update(visible=False), None, large_box, show_progress="hidden",
                      api_visibility="private")

    def set_angles(az: float, el: float, request: gr.Request):
        session = ctx.session(request)
        with session.lock:
            session.view = session.view.with_angles(az, el)
        return view_key(session), render_stream(session)

    def set_angles_low(az: float, el: float, request: gr.Request):
        session = ctx.session(request)
        with session.lock:
            session.view = session.view.with_angles(az, el)
        return render_stream(session, low=True)  # the full render on release updates the page's key

    for slider in (azimuth, elevation):
        slider.input(
            set_angles_low, [azimuth, elevation], image,
            show_progress="hidden", trigger_mode="always_last", api_visibility="private",
        )
        slider.release(set_angles, [azimuth, elevation], [shown_key, image], show_progress="hidden",
                       api_visibility="private")

    def set_tint(tint_on: bool, request: gr.Request):
        """One switch for both views: the streamed view's tint and the Viser view's "Mask tint" box."""
        session = ctx.session(request)
        session.set_tint(bool(tint_on))
        return view_key(session), render_stream(session)

    tint.input(set_tint, [tint], [shown_key, image], show_progress="hidden", api_name="set_tint")

    def clicked(event: gr.SelectData, request: gr.Request):
        session = ctx.session(request)
        u, v = (float(c) + 0.5 for c in event.index[:2])
        with session.lock:
            camera = session.view.cameras(WIDTH, HEIGHT)
        try:
            ctx.masking.apply_click(session, click_from_pixel(camera, u, v))
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc

    ctx.changed(image.select(clicked, [], None, show_progress="hidden", api_visibility="private"))

    def click_view(u: float, v: float, request: gr.Request) -> int:
        """Apply the session's mask tool at pixel (u, v) of the streamed view; returns the selected count."""
        session = ctx.session(request)
        with session.lock:
            camera = session.view.cameras(WIDTH, HEIGHT)
        try:
            return ctx.masking.apply_click(session, click_from_pixel(camera, float(u), float(v)))
        except (ValueError, OSError) as exc:
            raise gr.Error(str(exc)) from exc

    gr.api(click_view, api_name="click_view")
