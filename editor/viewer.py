"""The Viser 3D view of one browser session.

Design: one ViserServer per page session, on its own port (the first free one from --viser-port up). The
Gradio page embeds `http://<host>:<port>/` in an iframe, so every click that reaches this server comes from
that session's page and edits that session's mask, and the scene it shows is that session's scene. (Viser
1.1 offers no public way to tell which page a websocket belongs to, so one server per session is the simplest
isolation that cannot leak; a server costs one thread and a few MB.)

What it shows:
- the scene as client-side splats (base colour, optionally mask-tinted), updated in place while an edit runs:
  a level of detail the browser can draw (viewer_lod: splats sampled by importance, the selection always in
  full, "Full detail" for every splat), sent a chunk at a time at the pace the browser draws them
  (viewer_stream: a small first chunk, more while its frame time allows; only changed chunks are sent again);
- server renders from the engine renderer as the background image (view-dependent colour, exact pixels):
  low resolution while the camera moves, full resolution once it rests. Shown "on demand" (the checkbox) and
  automatically while an edit runs; the splats are hidden meanwhile so the render is what you see.

Gestures (click, rectangle) are turned into ViewClick / ViewRect with the client's camera and handed to the
callbacks; the session decides what they mean (pick, brush, SAM, rectangle; add or subtract).

All updates go through one worker thread per viewer that keeps only the newest pending request of each kind,
so a fast stream of previews never queues up and callers (the engine's event thread) never block.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import drawing
from .gestures import ViewClick, ViewRect
from .viewer_lod import DEFAULT_SPLAT_BUDGET
from .viewer_stream import SplatStream

log = logging.getLogger(__name__)

MOVING_SCALE = 0.25  # background render size while the camera moves, relative to the canvas
REST_DELAY_S = 0.3  # the camera "rests" after this long without an update -> full resolution
MAX_RENDER_SIDE = 1024  # cap on the full-resolution render (CPU cost grows with pixels)


@dataclass
class _Pending:
    scene: object | None = None  # GaussianScene to show
    mask: object | None = None  # Tensor [N] | None
    scene_dirty: bool = False
    render_clients: dict | None = None  # client_id -> (camera handle snapshot, time of the update)
    frame: tuple[int, float | None] | None = None  # (timing token, seconds of one browser frame) from FramePacer


class SessionViewer:
    """A ViserServer showing one session's scene; gestures call `on_click(ViewClick)` / `on_rect(ViewRect)`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        on_click: Callable[[ViewClick], None] | None = None,
        on_rect: Callable[[ViewRect], None] | None = None,
        title: str = "Splat editor",
        splat_budget: int | None = DEFAULT_SPLAT_BUDGET,
    ) -> None:
        """`splat_budget`: splats the browser gets unless "Full detail" is on (None: always every one)."""
        import viser

        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.gui.configure_theme(control_layout="floating", control_width="small", show_logo=False,
                                        show_share_button=False, dark_mode=False)
        self.port = int(self.server.get_port())
        self._on_click = on_click
        self._on_rect = on_rect
        self._lock = threading.Condition()
        self._pending = _Pending(render_clients={})
        self._closed = False
        self.splat_budget = splat_budget
        self._stream = SplatStream(self.server, self._frame_timed)
        self._scene = None
        self._mask = None
        self._editing = False
        self._live = False  # an edit is sending in-progress scenes
        self._background_shown = False
        self.stats = {"splat_updates": 0, "renders_low": 0, "renders_full": 0, "clicks": 0, "rects": 0,
                      "splats_sent": 0, "splat_bytes": 0, "splats_shown": 0, "frame_s": None, "level": 1}

        with self.server.gui.add_folder("View"):
            self.tint_checkbox = self.server.gui.add_checkbox("Mask tint", initial_value=True)
            self.render_checkbox = self.server.gui.add_checkbox(
                "Server render", initial_value=False, hint="Exact engine render with view-dependent colour"
            )
            self.full_detail_checkbox = self.server.gui.add_checkbox(
                "Full detail", initial_value=splat_budget is None,
                hint="Send every Gaussian to this view (slow in a browser without a GPU); by default it gets a "
                     "sample by importance, and the selection always in full",
            )
            self.status_text = self.server.gui.add_markdown("")
            self.detail_text = self.server.gui.add_markdown("")
        self.tint_checkbox.on_update(lambda _: self._mark_scene_dirty())
        self.full_detail_checkbox.on_update(lambda _: self._mark_scene_dirty())
        self.render_checkbox.on_update(lambda _: self._server_render_toggled())

        self.server.scene.on_click()(self._handle_click)
        self._rect_enabled = False
        self.server.on_client_connect(self._handle_connect)
        self.server.on_client_disconnect(self._handle_disconnect)

        self._thread = threading.Thread(target=self._loop, name=f"viewer-{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API (thread-safe)
    def show(self, scene, mask=None) -> None:
        """Show `scene` (a GaussianScene; a snapshot the caller will not modify) with mask weights [N]."""
        with self._lock:
            self._pending.scene = scene
            self._pending.mask = mask
            self._pending.scene_dirty = True
            self._live = self._editing  # an in-progress scene: worth exact renders
            self._lock.notify()

    def frame(self, view) -> None:
        """Point new clients (and the connected ones) at an OrbitView of the scene; the view's up (the scene's
        up axis) is Viser's up, so its orbit controls turn the scene upright."""
        camera = view.cameras(64, 64)
        eye = camera.centers[0].double().numpy()
        target = np.asarray(view.target, dtype=np.float64)
        up = tuple(float(c) for c in view.up)
        self.server.scene.set_up_direction(up)
        self.server.initial_camera.up = up
        self.server.initial_camera.position = tuple(eye)
        self.server.initial_camera.look_at = tuple(target)
        for client in self.server.get_clients().values():
            client.camera.up_direction = np.asarray(up)
            client.camera.position = eye
            client.camera.look_at = target

    def set_editing(self, editing: bool) -> None:
        """While an edit runs and sends in-progress scenes, the view shows server renders of them
        (view-dependent colour); `show` calls during the edit update the splats in place."""
        with self._lock:
            if self._editing == editing:
                return
            self._editing = editing
            self._live = False
        self._server_render_toggled()

    def set_rect_mode(self, enabled: bool) -> None:
        """Dragging draws a selection rectangle (and no longer orbits) while the rectangle tool is chosen."""
        if enabled == self._rect_enabled:
            return
        self._rect_enabled = enabled
        if enabled:
            self.server.scene.on_rect_select()(self._handle_rect)
        else:
            self.server.scene.remove_rect_select_callback("all")

    def set_status(self, text: str) -> None:
        self.status_text.content = text

    @property
    def server_render_active(self) -> bool:
        return bool(self.render_checkbox.value) or (self._editing and self._live)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        try:
            self.server.stop()
        except Exception:  # noqa: BLE001 - stopping twice or during shutdown is harmless
            log.debug("viser server stop failed", exc_info=True)

    # ------------------------------------------------------------------ viser callbacks (viser's threads)
    def _handle_connect(self, client) -> None:
        self._mark_scene_dirty()  # a browser to pace the refinement by

        @client.camera.on_update
        def _(camera) -> None:
            self._request_render(camera.client.client_id)

    def _handle_disconnect(self, _client) -> None:
        """The last page went away (a reload, a closed tab): the next one starts from the first chunk, which
        is all a new page is sent on connecting (Viser replays the scene's nodes as they are)."""
        if not self.server.get_clients():
            with self._lock:
                self._stream.restart()
            self._mark_scene_dirty()

    def _frame_timed(self, token: int, seconds: float | None) -> None:
        with self._lock:
            self._pending.frame = (token, seconds)
            self._lock.notify()

    def _handle_click(self, event) -> None:
        self.stats["clicks"] += 1
        if self._on_click is None:
            return
        cam = event.client.camera
        camera = self._client_camera(cam)
        u, v = event.screen_pos
        click = ViewClick(
            camera=camera,
            pixel=(float(u) * camera.width, float(v) * camera.height),
            ray_origin=np.asarray(event.ray_origin, dtype=np.float64),
            ray_direction=np.asarray(event.ray_direction, dtype=np.float64),
        )
        self._on_click(click)

    def _handle_rect(self, event) -> None:
        self.stats["rects"] += 1
        if self._on_rect is None:
            return
        camera = self._client_camera(event.client.camera)
        (u0, v0), (u1, v1) = event.screen_min, event.screen_max
        self._on_rect(
            ViewRect(
                camera=camera,
                pixel_min=(min(u0, u1) * camera.width, min(v0, v1) * camera.height),
                pixel_max=(max(u0, u1) * camera.width, max(v0, v1) * camera.height),
            )
        )

    @staticmethod
    def _client_camera(cam, scale: float = 1.0, max_side: int | None = None):
        width, height = max(1, int(cam.image_width)), max(1, int(cam.image_height))
        s = scale
        if max_side is not None:
            s = min(s, max_side / max(width, height))
        w, h = max(8, int(round(width * s))), max(8, int(round(height * s)))
        return drawing.camera_from_pose(cam.wxyz, cam.position, cam.fov, w, h)

    # ------------------------------------------------------------------ the update thread
    def _mark_scene_dirty(self) -> None:
        with self._lock:
            if self._pending.scene is None:
                self._pending.scene = self._scene
                self._pending.mask = self._mask
            self._pending.scene_dirty = True
            self._lock.notify()

    def _server_render_toggled(self) -> None:
        self._mark_scene_dirty()
        for client_id in list(self.server.get_clients()):
            self._request_render(client_id)

    def _request_render(self, client_id: int) -> None:
        with self._lock:
            self._pending.render_clients[client_id] = time.monotonic()
            self._lock.notify()

    def _loop(self) -> None:
        full_res_due: dict[int, float] = {}  # client -> time its camera came to rest
        while True:
            with self._lock:
                while (not self._closed and not self._pending.scene_dirty and not self._pending.render_clients
                       and self._pending.frame is None):
                    timeout = None
                    wakes = list(full_res_due.values())
                    if wakes:
                        timeout = max(0.0, min(wakes) - time.monotonic())
                        if timeout == 0.0:
                            break
                    self._lock.wait(timeout)
                if self._closed:
                    return
                scene_dirty = self._pending.scene_dirty
                scene, mask = self._pending.scene, self._pending.mask
                moved = dict(self._pending.render_clients)
                frame = self._pending.frame
                self._pending.scene_dirty = False
                self._pending.scene = None
                self._pending.render_clients = {}
                self._pending.frame = None
            try:
                if scene_dirty and scene is not None:
                    self._scene, self._mask = scene, mask
                    self._push_splats()
                    # New content: every client's background is stale.
                    for client_id in self.server.get_clients():
                        moved.setdefault(client_id, time.monotonic())
                elif frame is not None and self._scene is not None:
                    self._pace(*frame)
                if not self.server_render_active:
                    full_res_due.clear()
                    if self._background_shown:
                        self.server.scene.set_background_image(None)
                        for client in self.server.get_clients().values():
                            client.scene.set_background_image(None)
                        self._background_shown = False
                    continue
                for client_id in moved:
                    self._render_for(client_id, full=False)
                    full_res_due[client_id] = time.monotonic() + REST_DELAY_S
                for client_id, due in list(full_res_due.items()):
                    if due <= time.monotonic() and client_id not in moved:
                        self._render_for(client_id, full=True)
                        del full_res_due[client_id]
            except Exception:  # noqa: BLE001 - keep the viewer alive; the log says what broke
                log.exception("viewer update failed")

    def _budget(self) -> tuple[int | None, bool]:
        """(the most splats the view may hold, whether that is every one: "Full detail" or no budget)."""
        full = bool(self.full_detail_checkbox.value) or self.splat_budget is None
        return (None if full else self.splat_budget), full

    def _push_splats(self) -> None:
        """Send what changed of the scene's level of detail (viewer_stream.SplatStream) and say how much shows."""
        cap, full = self._budget()
        self.detail_text.content = self._stream.push(
            self._scene, self._mask, cap=cap, full=full, tint=bool(self.tint_checkbox.value),
            visible=not self.server_render_active, editing=self._editing, stats=self.stats)

    def _pace(self, token: int, seconds: float | None) -> None:
        """A browser frame was timed: one chunk more, or less, or none (viewer_stream.next_level)."""
        cap, full = self._budget()
        if self._stream.paced(token, seconds, cap=cap, full=full, stats=self.stats):
            self._push_splats()

    def _render_for(self, client_id: int, *, full: bool) -> None:
        client = self.server.get_clients().get(client_id)
        if client is None or self._scene is None:
            return
        cam = client.camera
        if cam.image_width <= 0 or cam.update_timestamp == 0.0:
            return
        camera = self._client_camera(cam, 1.0 if full else MOVING_SCALE, MAX_RENDER_SIDE)
        image = drawing.render_view(self._scene, camera, mask=self._mask, tint=bool(self.tint_checkbox.value))
        client.scene.set_background_image(image, format="jpeg", jpeg_quality=90 if full else 70)
        self._background_shown = True
        self.stats["renders_full" if full else "renders_low"] += 1
