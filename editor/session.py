"""Per-browser-session state: the scene, the selection, the parts, the view, the running job, the viewer.

Gradio gives every page (and every gradio_client Client) a session hash; `SessionRegistry.get(hash)` returns
that session's `Session`, creating it on first use with the default scene. Event handlers read and change only
their own session, under its lock, so two pages never see each other's scene or mask. Sessions idle longer
than the configured TTL are closed (their Viser port and memory freed).

Everything the session holds is a plain value: scenes are immutable GaussianScene objects, masks are CPU
tensors that are replaced, never modified in place; a snapshot handed to the viewer or the engine is safe.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import drawing
from .scenes import SceneBundle
from .job_status import JobStatus
from .orbit import OrbitView

log = logging.getLogger(__name__)

TOOLS = ("pick", "brush", "rect", "sam")
KEEP_FRAMES = 6  # image files kept per output slot
OPS = ("add", "subtract")


@dataclass(frozen=True)
class UserChange:
    """A selection or named-parts change the user made (not one shown from the engine's history)."""

    kind: str  # "mask" | "parts"
    label: str  # the history entry's label
    value: object  # the new selection [N] (a Tensor) or the parts ({name: weights [N]})
    group: bool = False  # continues the previous entry (the next click of one brush stroke)


@dataclass
class LiftState:
    """The last multi-view lift: soft weights the threshold slider re-cuts, and the selection it was added to."""

    weights: Tensor  # [N] in [0, 1]
    base: Tensor  # [N] selection before the lift
    op: str  # "add" | "subtract"


class Session:
    """One page's scene, selection, parts, view and job; all access under `lock`."""

    def __init__(self, session_id: str, bundle: SceneBundle, workspace: Path) -> None:
        self.id = session_id
        self.lock = threading.RLock()
        self.workspace = workspace
        self.created_at = self.last_seen = time.time()
        self.viewer = None  # SessionViewer | None
        self.tool = "pick"
        self.op = "add"
        self.brush_radius = 24.0  # pixels
        self.threshold = 0.5
        self.tint = True  # streamed view: draw the selection as a tint
        self.lift_method = "vote"  # "vote" | "galp": how SAM's multi-view masks become 3D weights
        self.sam_views = 8  # views SAM is run on for one click
        self.job = JobStatus()
        self.job_epoch = 0  # bumped when `job` is reset (a new scene): the Edit panel then clears its outputs
        self.mask_task = JobStatus()  # the last SAM click / lift task on the engine thread
        self.notice = ""  # the latest warning of a gesture ("hits no Gaussian"), cleared by the next change
        self.stream_visible = False  # the page shows the Render tab (the streamed view is worth re-rendering)
        self.live: tuple | None = None  # (scene, mask) of a running edit, shown instead of the scene
        self.history_labels: list[str] = []
        self.history_cursor = -1
        self.revision = 0  # bumped on every scene or mask change (the UI polls it)
        self.model_spec: str | None = None  # guidance model chosen in this session (None: the app's default)
        # The user's own selection and part changes go to the engine's history through these (editor.engine_link);
        # states shown FROM the engine (undo, restore, a finished edit) never call them, so nothing echoes back.
        self.on_user_change: list[Callable[["Session", UserChange], None]] = []
        self._recorded: Tensor | None = None  # the selection the engine's history holds (set in _set_bundle)
        self._frames: dict[str, list[Path]] = {}  # image files handed to the page, per slot (image_file)
        self._frame_counter = 0
        self._set_bundle(bundle)

    # ------------------------------------------------------------------ state
    @property
    def scene(self):
        return self.bundle.scene

    @property
    def up(self) -> tuple[float, float, float]:
        """The scene's up axis: every orbit (views, SAM views, edits, turntables, the web copy) circles it."""
        return self.bundle.up

    def _show_up(self, up, source: str) -> None:
        changed = tuple(up) != tuple(self.bundle.up)
        self.bundle = dataclasses.replace(self.bundle, up=tuple(up), up_source=source)
        if changed:
            lo, hi = self.scene.bounding_box(quantile=0.01 if len(self.scene) > 200 else 0.0)
            self.view = OrbitView.framing(lo, hi, up=self.bundle.up)

    def _set_bundle(self, bundle: SceneBundle) -> None:
        self.bundle = bundle
        n = len(bundle.scene)
        self.selection = torch.zeros(n)
        self.lift: LiftState | None = None
        self.hidden_parts: set[str] = set()
        self.parts: dict[str, Tensor] = {}
        if bundle.part_ids is not None:
            for index, name in enumerate(bundle.part_names):
                self.parts[name] = (bundle.part_ids == index).float()
        lo, hi = bundle.scene.bounding_box(quantile=0.01 if n > 200 else 0.0)
        self.view = OrbitView.framing(lo, hi, up=bundle.up)
        self._recorded = self.selection

    def set_bundle(self, bundle: SceneBundle) -> None:
        """A newly opened scene: selection, parts (ground truth if the bundle has them) and view restart; the
        Edit panel forgets the previous scene's preview and before/after."""
        with self.lock:
            self._set_bundle(bundle)
            if not self.job.active:
                self.job = JobStatus()
                self.job_epoch += 1
            self.notice = ""
            self._changed()

    def show_state(self, scene, selection: Tensor | None, parts: dict, name: str | None = None, up=None,
                   up_source: str = "default") -> None:
        """Show a state of the engine's history (after undo/redo/restore): its scene, selection, named parts,
        name and up axis (a changed up, or another object — a generation or its undo — re-frames the view,
        from the same angles); not itself a new history entry."""
        with self.lock:
            same_count = len(scene) == len(self.bundle.scene)
            another_object = name is not None and name != self.bundle.name
            self.bundle = dataclasses.replace(self.bundle, scene=scene, name=name or self.bundle.name,
                                              part_ids=self.bundle.part_ids if same_count else None,
                                              part_names=self.bundle.part_names if same_count else [])
            self.selection = (selection.detach().float().cpu() if selection is not None
                              else torch.zeros(len(scene)))
            self._recorded = self.selection
            self.parts = {n: w.float() for n, w in parts.items()}
            self.hidden_parts &= set(self.parts)
            if not same_count:
                self.lift = None
            if up is not None:
                self._show_up(up, up_source)
            if another_object:
                lo, hi = scene.bounding_box(quantile=0.01 if len(scene) > 200 else 0.0)
                self.view = OrbitView.framing(lo, hi, azimuth=self.view.azimuth, elevation=self.view.elevation,
                                              up=self.bundle.up)
            self.notice = ""
            self._changed()

    def set_parts(self, parts: dict, *, label: str) -> None:
        """Replace the named parts (a history entry in the engine, so it can be undone)."""
        with self.lock:
            self.check_mask_editable()
            self.parts = dict(parts)
            self.hidden_parts &= set(self.parts)
            self.notice = ""
            self._changed()
            self._tell(UserChange("parts", label, dict(parts)))

    def set_selection(self, selection: Tensor, *, label: str = "edit selection", keep_lift: bool = False,
                      record: bool = True, group: bool = False) -> None:
        """Replace the selection; `record=False` for live previews that should not become history entries. A
        recorded change the engine's history does not hold yet becomes a history entry labelled `mask: <label>`
        (`group`: it continues the previous entry of the same label, e.g. the next click of a brush stroke)."""
        with self.lock:
            self.check_mask_editable()
            self.notice = ""
            if selection.shape != (len(self.scene),):
                raise ValueError(f"a mask for this scene must have shape [{len(self.scene)}], got {list(selection.shape)}")
            self.selection = selection.detach().float().clamp(0.0, 1.0).cpu()
            if not keep_lift:
                self.lift = None
            self._changed()
            recorded = self._recorded
            if record and not (recorded is not None and recorded.shape == self.selection.shape
                               and torch.equal(recorded, self.selection)):
                self._recorded = self.selection
                self._tell(UserChange("mask", f"mask: {label}", self.selection, group=group))

    def set_live(self, scene=None, mask: Tensor | None = None) -> None:
        """Show an edit's in-progress scene (and its mask) until `set_live()` clears it. The revision is not
        bumped: the Viser view is updated directly and the page's streamed view re-renders once the job ends
        (re-rendering it at every preview would take CPU from the edit)."""
        with self.lock:
            self.live = None if scene is None else (scene, mask)

    def check_mask_editable(self) -> None:
        """The selection is frozen while an edit runs (the edit may add Gaussians, so a mask drawn now would
        not fit its result); ValueError says so."""
        if self.job.active:
            raise ValueError("an edit is running: the mask can change when it ends (or cancel it)")

    def display_mask(self) -> Tensor | None:
        """The selection as the viewer tints it (None when nothing is selected)."""
        with self.lock:
            mask = self.selection if self.live is None else self.live[1]
            return mask if mask is not None and bool((mask > 0).any()) else None

    def display_scene(self):
        """The scene as shown: an edit's in-progress scene while one runs; otherwise the current scene with the
        Gaussians of hidden parts made fully transparent (indices unchanged)."""
        with self.lock:
            if self.live is not None:
                return self.live[0]
            scene = self.scene
            if not self.hidden_parts:
                return scene
            hidden = torch.zeros(len(scene), dtype=torch.bool)
            for name in self.hidden_parts:
                if name in self.parts:
                    hidden |= self.parts[name] > 0.5
            return drawing.hide_gaussians(scene, hidden)

    def set_tint(self, on: bool) -> None:
        """The one mask-tint switch of both views (the Render tab's box and the Viser view's "Mask tint")."""
        with self.lock:
            if self.tint == bool(on):
                return
            self.tint = bool(on)
            self.revision += 1
        viewer = self.viewer
        if viewer is not None and bool(viewer.tint_checkbox.value) != bool(on):
            viewer.tint_checkbox.value = bool(on)

    def selected_count(self, threshold: float = 0.5) -> int:
        with self.lock:
            return int((self.selection > threshold).sum())

    # ------------------------------------------------------------------ changes
    def _changed(self) -> None:
        """Something shown changed: the page's sync timer re-reads the session; the Viser view is sent it now."""
        self.revision += 1
        if self.viewer is not None:
            try:
                self.push_to_viewer()
            except Exception:  # noqa: BLE001 - a broken viewer must not break the session
                log.exception("updating the viewer failed")

    def _tell(self, change: "UserChange") -> None:
        for fn in list(self.on_user_change):
            try:
                fn(self, change)
            except Exception:  # noqa: BLE001 - a broken link must not break the session
                log.exception("user-change hook failed")

    def push_to_viewer(self, scene=None) -> None:
        """Send the current scene (or an in-progress preview `scene`) and the selection to the Viser view."""
        if self.viewer is not None:
            self.viewer.show(scene if scene is not None else self.display_scene(), self.display_mask())
            with self.lock:  # the viewer's status line: the count, or the warning of the latest gesture
                status = f"⚠️ {self.notice}" if self.notice else f"{self.selected_count():,} selected"
            self.viewer.set_status(status)

    def image_file(self, slot: str, image: np.ndarray | None) -> str | None:
        """`image` (uint8 [H, W, 3]) as a JPEG under a unique name, for a Gradio image output.

        Why files: Gradio writes numpy outputs to a cache file named by the image's hash, rewriting it in place
        every time, so two sessions showing the same picture at once (the default scene from the default view)
        could download a half-written file. Gradio copies a returned file into its cache atomically instead.
        Only the newest few files of a slot are kept (older ones have long been copied by Gradio).
        """
        if image is None:
            return None
        from PIL import Image

        folder = self.workspace / "frames"
        folder.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self._frame_counter += 1
            path = folder / f"{slot}-{self._frame_counter}.jpg"
            kept = self._frames.setdefault(slot, [])
            kept.append(path)
            stale = kept[:-KEEP_FRAMES]
            del kept[:-KEEP_FRAMES]
        tmp = path.with_suffix(".tmp")
        Image.fromarray(image).save(tmp, format="JPEG", quality=90)
        tmp.replace(path)
        for old in stale:
            old.unlink(missing_ok=True)
        return str(path)

    def touch(self) -> None:
        self.last_seen = time.time()

    def close(self) -> None:
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None
        import shutil

        shutil.rmtree(self.workspace / "frames", ignore_errors=True)


class SessionRegistry:
    """Sessions by Gradio session hash, created lazily with the default scene, closed when idle."""

    def __init__(
        self,
        make_bundle: Callable[[], SceneBundle],
        workspace: Path,
        *,
        ttl_s: float = 3600.0,
        max_viewers: int = 16,
        viewer_factory: Callable[[Session], object] | None = None,
    ) -> None:
        self._make_bundle = make_bundle
        self._base_bundle: SceneBundle | None = None
        self.workspace = Path(workspace)
        self.ttl_s = ttl_s
        self.max_viewers = max_viewers
        self.viewer_factory = viewer_factory
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.on_create: list[Callable[[Session], None]] = []  # e.g. EngineLink.attach (history per session)

    def base_bundle(self) -> SceneBundle:
        """The default scene, read once and shared (scenes are immutable, so sharing is safe)."""
        with self._lock:
            if self._base_bundle is None:
                self._base_bundle = self._make_bundle()
            return self._base_bundle

    def get(self, session_id: str) -> Session:
        if not session_id:
            raise ValueError("no session id: the request did not come through a Gradio session")
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            base = self.base_bundle()
            bundle = SceneBundle(base.scene, base.name, base.part_ids, list(base.part_names), base.up, base.up_source)
            safe_id = "".join(c for c in session_id if c.isalnum())[:32] or "session"
            fresh = Session(session_id, bundle, self.workspace / safe_id)
            with self._lock:
                session = self._sessions.setdefault(session_id, fresh)
            if session is fresh:
                for fn in self.on_create:
                    fn(session)
        session.touch()
        return session

    def ensure_viewer(self, session: Session):
        """The session's Viser viewer, started on first call; None when the viewer limit is reached."""
        if self.viewer_factory is None:
            return None
        with session.lock:
            if session.viewer is not None:
                return session.viewer
            live = sum(1 for s in self.sessions() if s.viewer is not None)
            if live >= self.max_viewers:
                return None
            session.viewer = self.viewer_factory(session)
            session.viewer.frame(session.view)
        session.push_to_viewer()
        return session.viewer

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def close(self, session_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close()

    def reap_idle(self, now: float | None = None) -> list[str]:
        """Close sessions idle for longer than the TTL (not while their job runs); returns their ids."""
        now = time.time() if now is None else now
        stale = [s.id for s in self.sessions() if now - s.last_seen > self.ttl_s and not s.job.active]
        for session_id in stale:
            self.close(session_id)
        return stale

    def close_all(self) -> None:
        for session in self.sessions():
            self.close(session.id)
