"""JobRunner: the editor's link to the engine's edit jobs, history and models.

All edits of all sessions queue through ONE engine thread (it owns the device and the loaded models); the UI
threads only enqueue commands and read each session's JobStatus, which the engine thread updates from the edit's
progress events. Pause blocks the job between two steps, cancel stops it within one step and leaves the scene as
it was. Every finished edit and every mask change is a history entry (engine.history), so undo restores the
exact previous parameters and selection.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from . import backend
from .backend import SceneBundle
from .session import JobStatus, Session, SessionRegistry

log = logging.getLogger(__name__)

MASK_COALESCE_S = 1.5  # mask changes with the same label this close together become one history entry


@dataclass
class EditSettings:
    """What the Edit panel collects; `to_config` turns it into engine.edit.EditConfig."""

    prompt: str
    source_prompt: str = ""
    method: str = "sds"
    steps: int = 300
    guidance_scale: float | None = None
    resolution: int = 256
    seed: int = 0
    preview_every: int = 5
    densify: bool = True
    prior_removal: bool = False

    def to_config(self, model_spec: str):
        from engine.edit import EditConfig

        config = EditConfig(
            prompt=self.prompt, source_prompt=self.source_prompt, method=self.method, model=model_spec,
            steps=int(self.steps), resolution=int(self.resolution), guidance_scale=self.guidance_scale,
            seed=int(self.seed), preview_every=int(self.preview_every), preview_resolution=256,
        )
        config.densify.enabled = bool(self.densify)
        if self.prior_removal:
            config.prior.enabled = True  # (unticked: the method's default — on for romap, off otherwise)
        return config


@dataclass
class _Control:
    """Flags one queued/running job reads between steps."""

    cancel: threading.Event = field(default_factory=threading.Event)
    running: threading.Event = field(default_factory=threading.Event)  # cleared while paused

    def __post_init__(self) -> None:
        self.running.set()


class JobRunner:
    """Queues edit jobs from every session through one engine thread; owns histories and model loading."""

    def __init__(self, registry: SessionRegistry, config) -> None:
        from engine.guidance import default_model_spec

        self.registry = registry
        self.space = bool(getattr(config, "space", False))
        self.default_spec = config.model or default_model_spec()
        self._queue: queue.Queue = queue.Queue()
        self._histories: dict[str, object] = {}  # session id -> engine.history.History
        self._controls: dict[str, _Control] = {}
        self._models: dict[str, object] = {}
        self._model_state: dict[str, dict] = {}
        self._lock = threading.RLock()
        self._restoring: set[str] = set()
        self._last_mask_push: dict[str, tuple[str, float]] = {}
        self._thread = threading.Thread(target=self._engine_loop, name="engine", daemon=True)
        self._thread.start()
        registry.on_create.append(self.attach)

    # ------------------------------------------------------------------ sessions and history
    def attach(self, session: Session) -> None:
        """Start the session's history at its current scene and follow its mask changes."""
        from engine.history import History

        with self._lock:
            self._histories[session.id] = History(session.scene, session.selection, label=f"open {session.bundle.name}")
        session.history_labels, session.history_cursor = self._history_view(session.id)
        session.add_listener(self._on_session_change)

    def forget(self, session_id: str) -> None:
        """The session is gone: cancel its job and drop its history."""
        with self._lock:
            control = self._controls.get(session_id)
            if control is not None:
                control.cancel.set()
                control.running.set()
            self._histories.pop(session_id, None)

    def _history(self, session: Session):
        with self._lock:
            if session.id not in self._histories:
                self.attach(session)
            return self._histories[session.id]

    def _history_view(self, session_id: str) -> tuple[list[str], int]:
        history = self._histories[session_id]
        return history.labels(), history.cursor

    def _on_session_change(self, session: Session) -> None:
        """Record a mask change (not one made by undo/redo/edit) as a history entry; coalesce quick repeats."""
        if session.id in self._restoring:
            return
        with self._lock:
            history = self._histories.get(session.id)
            if history is None or history.current.scene is not session.scene:
                return
            current = history.current.mask
            selection = session.selection
            if current is not None and current.shape == selection.shape and torch.equal(current, selection):
                return
            label = f"mask: {session.last_action}"
            previous = self._last_mask_push.get(session.id)
            now = time.monotonic()
            if previous is not None and previous[0] == label and now - previous[1] < MASK_COALESCE_S \
                    and history.can_undo and history.current.label == label:
                history.undo()  # replace the entry just made (a slider drag, a brush stroke of clicks)
            history.push(label, mask=selection)
            self._last_mask_push[session.id] = (label, now)
            session.history_labels, session.history_cursor = self._history_view(session.id)

    def load_scene(self, session: Session, bundle: SceneBundle) -> None:
        """Open a scene in the session; its history restarts there."""
        from engine.history import History

        session.set_bundle(SceneBundle(bundle.scene, bundle.name, bundle.part_ids, list(bundle.part_names)))
        with self._lock:
            self._histories[session.id] = History(session.scene, session.selection, label=f"open {bundle.name}")
            session.history_labels, session.history_cursor = self._history_view(session.id)
        session.revision += 1

    def undo(self, session: Session) -> None:
        self._step_history(session, "undo")

    def redo(self, session: Session) -> None:
        self._step_history(session, "redo")

    def _step_history(self, session: Session, direction: str) -> None:
        if session.job.active:
            raise ValueError("an edit is running; cancel it before undo/redo")
        history = self._history(session)
        with self._lock:
            try:
                state = history.undo() if direction == "undo" else history.redo()
            except IndexError as exc:
                raise ValueError(f"nothing to {direction}") from exc
            self._restore(session, state)

    def _restore(self, session: Session, state) -> None:
        self._restoring.add(session.id)
        try:
            mask = state.mask if state.mask is not None else torch.zeros(len(state.scene))
            session.set_scene(state.scene, mask)
        finally:
            self._restoring.discard(session.id)
        session.history_labels, session.history_cursor = self._history_view(session.id)
        session.revision += 1

    def export(self, session: Session, path) -> str:
        with session.lock:
            scene = session.scene
        return str(backend.save_scene(scene, path))

    # ------------------------------------------------------------------ models
    def model_spec(self, session: Session) -> str:
        return getattr(session, "model_spec", None) or self.default_spec

    def set_model(self, session: Session, spec: str) -> None:
        from engine.guidance import parse_model_spec

        spec = _normalise_colour_spec((spec or "").strip())
        parse_model_spec(spec)  # ModelSpecError (a ValueError) for a malformed value
        session.model_spec = spec
        self.probe_model(spec)

    def probe_model(self, spec: str) -> None:
        """Load `spec` in the engine thread (if not loaded/tried yet) so the Model panel can tell its state."""
        with self._lock:
            if spec in self._model_state and self._model_state[spec]["state"] in ("loaded", "loading"):
                return
            self._model_state[spec] = {"spec": spec, "state": "loading", "source": "", "message": ""}
        self._queue.put(("load_model", spec))

    def model_status(self, session: Session) -> dict:
        spec = self.model_spec(session)
        with self._lock:
            status = dict(self._model_state.get(spec) or {"spec": spec, "state": "not loaded",
                                                          "message": "loads when the first edit starts"})
        return status

    def _load_model(self, spec: str):
        """In the engine thread: the loaded model for `spec` (cached), or raise with the engine's message."""
        from engine.guidance import load_guidance, parse_model_spec

        if spec in self._models:
            return self._models[spec]
        with self._lock:
            self._model_state[spec] = {"spec": spec, "state": "loading", "source": "", "message": ""}
        try:
            parsed = parse_model_spec(spec)
            model = load_guidance(parsed)
        except (OSError, ValueError) as exc:
            state = "unavailable" if isinstance(exc, OSError) else "error"
            with self._lock:
                self._model_state[spec] = {"spec": spec, "state": state, "source": "", "message": str(exc)}
            raise
        source = {"closed-form": "built in (no weights)", "local": parsed.location,
                  "hub": f"Hugging Face hub / cache: {parsed.location}"}.get(parsed.kind, "")
        device = getattr(model, "device", "cpu")
        with self._lock:
            self._models[spec] = model
            self._model_state[spec] = {"spec": spec, "state": "loaded", "source": f"{source} · on {device}",
                                       "message": ""}
        return model

    # ------------------------------------------------------------------ edit jobs
    def start(self, session: Session, settings: EditSettings) -> None:
        """Queue an edit of the session's selection; bad input raises ValueError before anything is queued."""
        from engine.edit import check_edit_inputs

        with session.lock:
            if session.job.active:
                raise ValueError("an edit is already running in this session")
            scene, mask = session.scene, session.selection.clone()
            spec = self.model_spec(session)
            config = settings.to_config(spec)
            check_edit_inputs(scene, mask, config)
            if not bool((mask > config.mask_threshold).any()):
                raise ValueError("nothing is selected: select the part to edit first (Mask tab)")
            view = session.view
            session.job = JobStatus(state="queued", total=config.steps, message="waiting for the engine",
                                    before=backend.render_view(scene, view.cameras(256, 256)))
            control = _Control()
            with self._lock:
                self._controls[session.id] = control
        self._queue.put(("edit", session, scene, mask, config, view, control))

    def pause(self, session: Session) -> None:
        control = self._controls.get(session.id)
        if control is not None and session.job.state in ("queued", "running"):
            control.running.clear()
            self._set_job(session, state="paused")

    def resume(self, session: Session) -> None:
        control = self._controls.get(session.id)
        if control is not None and session.job.state == "paused":
            control.running.set()
            self._set_job(session, state="running")

    def cancel(self, session: Session) -> None:
        control = self._controls.get(session.id)
        if control is not None and session.job.active:
            control.cancel.set()
            control.running.set()
            self._set_job(session, message="cancelling…")

    @staticmethod
    def _set_job(session: Session, **changes) -> None:
        with session.lock:
            for key, value in changes.items():
                setattr(session.job, key, value)

    def _engine_loop(self) -> None:
        while True:
            command = self._queue.get()
            try:
                if command[0] == "load_model":
                    try:
                        self._load_model(command[1])
                    except (OSError, ValueError):
                        pass  # the state says why
                elif command[0] == "edit":
                    self._run_edit(*command[1:])
            except Exception:  # noqa: BLE001 - the engine thread must survive anything
                log.exception("engine command failed")

    def _run_edit(self, session: Session, scene, mask, config, view, control: _Control) -> None:
        from engine.edit import run_edit

        if self.space:
            from .space import gpu_wrap

            run_edit = gpu_wrap(run_edit)
        if control.cancel.is_set():
            self._finish(session, control, state="cancelled", message="cancelled before it started")
            return
        self._set_job(session, message="loading model")
        try:
            model = self._load_model(config.model)
        except (OSError, ValueError) as exc:
            self._finish(session, control, state="error", message=str(exc).splitlines()[0])
            return
        with session.lock:
            if session.job.state != "paused":
                session.job.state = "running"
            session.job.started_at = time.time()
            session.job.message = ""
        if session.viewer is not None:
            session.viewer.set_editing(True)

        def should_stop() -> bool:
            control.running.wait()  # pause: block between two steps
            return control.cancel.is_set()

        def on_event(event) -> None:
            with session.lock:
                job = session.job
                job.step, job.total, job.eta_s = event.step, event.total, event.eta_s
                if "loss" in event.losses:
                    job.losses.append((event.step, float(event.losses["loss"])))
                if event.preview is not None:
                    job.preview = event.preview
                    job.preview_count += 1
            snapshot = getattr(event, "scene", None)
            if snapshot is not None and session.viewer is not None:
                session.viewer.show(snapshot, getattr(event, "mask", None))

        try:
            result = run_edit(scene, mask, config, model, on_event=on_event, should_stop=should_stop)
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error state; the scene is untouched
            log.exception("edit failed")
            self._finish(session, control, state="error", message=f"{type(exc).__name__}: {exc}".splitlines()[0])
            return
        if result.cancelled:
            self._finish(session, control, state="cancelled", message=f"cancelled after {result.steps_done} steps")
            return
        with session.lock:
            if session.scene is not scene:  # the user opened another scene meanwhile: keep theirs
                self._finish(session, control, state="cancelled", message="the scene changed during the edit")
                return
            history = self._history(session)
            self._restoring.add(session.id)
            try:
                session.set_scene(result.scene.detach().to("cpu"), result.mask.detach().float().cpu())
            finally:
                self._restoring.discard(session.id)
            with self._lock:
                history.push(f"edit ({config.method}): {config.prompt}", scene=session.scene, mask=session.selection)
                session.history_labels, session.history_cursor = self._history_view(session.id)
            session.job.preview = backend.render_view(session.scene, view.cameras(256, 256))
        self._finish(session, control, state="done", message=f"{len(result.scene):,} Gaussians")

    def _finish(self, session: Session, control: _Control, *, state: str, message: str) -> None:
        with self._lock:
            if self._controls.get(session.id) is control:
                del self._controls[session.id]
        with session.lock:
            session.job.state = state
            session.job.message = message
            session.job.eta_s = None
            session.revision += 1
        if session.viewer is not None:
            session.viewer.set_editing(False)
            session.push_to_viewer()


def _normalise_colour_spec(spec: str) -> str:
    """closed-form:rgba(208, 32, 32, 1) (what a colour picker may send) -> closed-form:#d02020."""
    prefix = "closed-form:"
    if not spec.lower().startswith(prefix):
        return spec
    colour = spec[len(prefix):].strip()
    if colour.lower().startswith(("rgb(", "rgba(")):
        try:
            values = [float(v) for v in colour[colour.index("(") + 1: colour.rindex(")")].split(",")[:3]]
            colour = "#" + "".join(f"{max(0, min(255, round(v))):02x}" for v in values)
        except ValueError:
            pass
    return prefix + colour
