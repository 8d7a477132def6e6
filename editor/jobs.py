"""JobRunner: the editor's link to the one engine worker (engine.worker.EngineWorker).

The worker owns the device, the models and every session's history (exact parameters per entry, autosaved).
This module sends it commands and turns its events into each Session's JobStatus and history labels:

    selection change in the UI ─► worker.set_mask (a history entry)
    Run ─► worker.start_edit ─► ProgressEvent / PreviewEvent ─► session.job (the Edit panel streams it)
                              └► DoneEvent ─► snapshot ─► session.set_scene (views refresh)
    Generate ─► worker.start_generate ─► the same events ─► DoneEvent ─► the result opens as a new scene
    Undo / Redo / Export / Open ─► the worker command, then the session mirrors the worker's current state

All sessions' edits queue through that single worker thread; between two steps of a running edit it serves the
quick commands (mask, undo, export) of other sessions, so the UI stays responsive.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import backend
from .backend import SceneBundle
from .session import JobStatus, Session, SessionRegistry

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 120.0  # longest a UI thread waits for a quick worker command (one edit step + the command)


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
    lr_scale: float = 1.0  # multiplies every learning rate (the closed-form demo converges faster with > 1)

    def to_config(self, model_spec: str):
        from engine.edit import EditConfig

        config = EditConfig(
            prompt=self.prompt, source_prompt=self.source_prompt, method=self.method, model=model_spec,
            steps=int(self.steps), resolution=int(self.resolution), guidance_scale=self.guidance_scale,
            seed=int(self.seed), preview_every=int(self.preview_every), preview_resolution=256,
        )
        config.densify.enabled = bool(self.densify)
        if self.lr_scale <= 0:
            raise ValueError(f"the learning-rate scale must be positive, got {self.lr_scale}")
        for name, value in config.lr.as_dict().items():
            setattr(config.lr, name, value * float(self.lr_scale))
        if self.prior_removal:
            config.prior.enabled = True  # (unticked: the method's default — on for romap, off otherwise)
        return config


MASK_TASK_LABELS = {"sam": "SAM click", "text": "text selection"}  # what the Mask panel calls each task
INIT_CURRENT = "current scene"  # GenerateSettings.init value: start from the session's current scene


@dataclass
class GenerateSettings:
    """What the Scene panel's "Generate from text" group collects; `to_config` makes engine.generate's config."""

    prompt: str
    model: str = ""  # "" : the session's model
    method: str = "sds"
    steps: int = 300
    init: str = "sphere"  # sphere | ellipsoid | INIT_CURRENT
    seed: int = 0
    resolution: int = 128
    num_gaussians: int = 2000
    preview_every: int = 5

    def to_config(self, model_spec: str):
        from engine.generate import GenerateConfig

        return GenerateConfig(
            prompt=self.prompt, model=model_spec, method=self.method, steps=int(self.steps),
            resolution=int(self.resolution), seed=int(self.seed), num_gaussians=int(self.num_gaussians),
            init="sphere" if self.init == INIT_CURRENT else self.init, preview_every=int(self.preview_every),
            preview_resolution=256,
        )


class JobRunner:
    """Sends every session's commands to one EngineWorker and mirrors its events into the sessions."""

    def __init__(self, registry: SessionRegistry, config, *, worker=None) -> None:
        from engine.guidance import default_model_spec

        self.registry = registry
        self.space = bool(getattr(config, "space", False))
        self.default_spec = config.model or default_model_spec()
        if worker is None:
            from engine.worker import EngineWorker

            worker = EngineWorker(workspace=Path(config.workspace) / "autosave")
        self.worker = worker
        self._lock = threading.RLock()
        self._model_state: dict[str, dict] = {}
        self._job_ids: dict[int, str] = {}  # worker command id -> session id
        self._generations: dict[int, tuple] = {}  # worker command id of a generation -> (scene name, up)
        self._mirroring: set[str] = set()  # sessions whose state is being set from the worker (do not echo)
        self._last_sent: dict[str, torch.Tensor] = {}  # session id -> the mask the worker has
        self._last_parts: dict[str, dict] = {}  # session id -> the parts dict the worker has
        self._task_ids: dict[int, str] = {}  # worker command id of a mask task -> session id
        worker.subscribe(self._on_event)
        registry.on_create.append(self.attach)

    # ------------------------------------------------------------------ sessions
    def attach(self, session: Session) -> None:
        """A new session: open its scene in the worker and send it every later selection change."""
        self._wait(self.worker.load_scene(session.id, session.scene, label=f"open {session.bundle.name}",
                                          parts=session.parts, name=session.bundle.name))
        with self._lock:
            self._last_sent[session.id] = session.selection
            self._last_parts[session.id] = session.parts
        session.add_listener(self._on_session_change)

    def forget(self, session_id: str) -> None:
        """The page closed: cancel its job and drop its state in the worker (the autosave stays)."""
        self.worker.close_session(session_id)

    def _on_session_change(self, session: Session) -> None:
        """Selection and named-part changes made in the UI become history entries in the worker."""
        if session.id in self._mirroring or not session.record_change:
            return
        with session.lock:
            mask, parts = session.selection, session.parts
            label, parts_label = f"mask: {session.last_action}", session.parts_action
        with self._lock:
            last = self._last_sent.get(session.id)
            parts_changed = self._last_parts.get(session.id) is not parts
            self._last_parts[session.id] = parts
            mask_changed = not (last is not None and last.shape == mask.shape and torch.equal(last, mask))
            if mask_changed:
                self._last_sent[session.id] = mask
        if parts_changed:  # runs after earlier commands; no wait
            self.worker.set_parts(session.id, dict(parts), label=parts_label or "parts")
        if mask_changed:
            self.worker.set_mask(session.id, mask.clone(), label=label)

    def _mirror(self, session: Session, *, bundle: SceneBundle | None = None) -> None:
        """Make the session show the worker's current scene, mask and parts."""
        now = self._wait(self.worker.current(session.id))
        self._mirroring.add(session.id)
        try:
            if bundle is not None:
                session.set_bundle(bundle)
            else:
                session.show_state(now.scene, now.mask, now.parts, now.name or None)
        finally:
            self._mirroring.discard(session.id)
        with self._lock:
            self._last_sent[session.id] = session.selection
            self._last_parts[session.id] = session.parts

    def load_scene(self, session: Session, bundle: SceneBundle) -> None:
        """Open a scene in the session; its history restarts there."""
        parts = {}
        if bundle.part_ids is not None:
            parts = {name: (bundle.part_ids == i).float() for i, name in enumerate(bundle.part_names)}
        self._wait(self.worker.load_scene(session.id, bundle.scene, label=f"open {bundle.name}", parts=parts,
                                          name=bundle.name))
        self._mirror(session, bundle=SceneBundle(bundle.scene, bundle.name, bundle.part_ids, list(bundle.part_names),
                                                 bundle.up, bundle.up_source))
        self._save_up(session)
        if session.viewer is not None:
            session.viewer.frame(session.view)

    # The scene's up axis is kept beside the worker's autosave (UP_FILE in the session's folder), so a restored
    # session comes back upright; a .ply export records it in its header.
    UP_FILE = "up.json"

    def set_up(self, session: Session, up) -> None:
        """The user's up axis for the session's scene (the Scene panel): views are framed upright for it."""
        session.set_up(up)
        self._save_up(session)
        if session.viewer is not None:
            session.viewer.frame(session.view)

    def _save_up(self, session: Session) -> None:
        folder = getattr(self.worker, "workspace", None)
        if folder is None:
            return
        import json

        path = Path(folder) / session.id / self.UP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"up": list(session.up), "source": session.bundle.up_source}))
        tmp.replace(path)

    def _saved_up(self, session_id: str) -> tuple[tuple[float, float, float], str]:
        """(up, source) saved for an autosaved session; +z ("default") when none was saved."""
        import json

        from engine.up import normalize_up

        folder = getattr(self.worker, "workspace", None)
        try:
            saved = json.loads((Path(folder) / session_id / self.UP_FILE).read_text())
            return normalize_up(saved["up"]), str(saved.get("source", "file"))
        except (TypeError, OSError, ValueError, KeyError):
            return (0.0, 0.0, 1.0), "default"

    def saved_sessions(self, exclude: set[str] = frozenset()) -> list[tuple[str, str]]:
        """(description, id) of autosaved sessions, newest first, that a page can restore."""
        from engine.worker import describe_autosave

        found = []
        for session_id in self.worker.saved_sessions():
            if session_id in exclude:
                continue
            meta = describe_autosave(self.worker.workspace / session_id) or {}
            states = meta.get("states") or []
            if not states:
                continue
            current = states[min(int(meta.get("cursor", 0)), len(states) - 1)]
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(meta.get("saved_at", 0))))
            found.append((float(meta.get("saved_at", 0)),
                          f"{when} · {len(states)} steps · {current['label']} · {current['count']:,} Gaussians",
                          session_id))
        return [(text, sid) for _, text, sid in sorted(found, reverse=True)]

    def restore(self, session: Session, source: str) -> None:
        """Bring back an autosaved session (its whole history) into this page's session."""
        if session.job.active:
            raise ValueError("an edit is running; cancel it before restoring")
        self._wait(self.worker.restore_session(session.id, source))
        now = self._wait(self.worker.current(session.id))
        up, up_source = self._saved_up(source)
        self._mirroring.add(session.id)
        try:
            session.set_bundle(SceneBundle(now.scene, now.name or f"restored session {source[:8]}", up=up,
                                           up_source=up_source))
            session.show_state(now.scene, now.mask, now.parts)
        finally:
            self._mirroring.discard(session.id)
        with self._lock:
            self._last_sent[session.id] = session.selection
            self._last_parts[session.id] = session.parts
        self._save_up(session)
        if session.viewer is not None:
            session.viewer.frame(session.view)

    def adopt_result(self, session: Session, scene, mask, label: str, *, name: str | None = None,
                     up=(0.0, 0.0, 1.0)) -> None:
        """A result computed outside the worker (Space mode: editor.space's spaces.GPU edit or generation) becomes
        one history entry in the worker, and the session shows it (undo/redo/export then work as after a worker
        job). `name`: a new object (a generation) that opens like a loaded scene under that name, `up` its up."""
        self._wait(self.worker.commit_result(session.id, scene, mask, label=label))
        if name is None:
            self._mirror(session)
            return
        current, _ = self._wait(self.worker.snapshot(session.id, copy=False))
        self._mirror(session, bundle=SceneBundle(current, name, up=tuple(up), up_source="generated"))
        self._save_up(session)
        if session.viewer is not None:
            session.viewer.frame(session.view)

    def undo(self, session: Session) -> None:
        self._step_history(session, self.worker.undo)

    def redo(self, session: Session) -> None:
        self._step_history(session, self.worker.redo)

    def _step_history(self, session: Session, command) -> None:
        if session.job.active:
            raise ValueError("an edit is running; cancel it before undo/redo")
        self._wait(command(session.id))
        self._mirror(session)

    def export(self, session: Session, path, *, spz_frame: str = "spec") -> str:
        """Write the current scene; a .ply records the scene's up axis in its header (engine.io.up); an .spz is
        stored in `spz_frame` ("raw" for splat-transform and Niantic's converter)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        name = Path(path).name.lower()
        if name.endswith(".ply") and not name.endswith(".compressed.ply"):
            scene, _ = self._wait(self.worker.snapshot(session.id, copy=False))  # queued after earlier commands
            return str(backend.save_scene(scene, path, up=session.up))
        return str(self._wait(self.worker.export(session.id, Path(path), spz_frame=spz_frame)))

    def _wait(self, future, timeout: float = COMMAND_TIMEOUT_S):
        """The result of a quick worker command; its errors (ValueError/OSError) reach the caller as they are."""
        return future.result(timeout)

    # ------------------------------------------------------------------ models
    def model_spec(self, session: Session) -> str:
        return session.model_spec or self.default_spec

    def set_model(self, session: Session, spec: str) -> None:
        from engine.guidance import parse_model_spec

        spec = _normalise_colour_spec((spec or "").strip())
        parse_model_spec(spec)  # ModelSpecError (a ValueError) for a malformed value
        session.model_spec = spec
        self.probe_model(spec)

    def model_status(self, session: Session) -> dict:
        spec = self.model_spec(session)
        self.probe_model(spec)
        with self._lock:
            return dict(self._model_state[spec])

    def model_status_of(self, spec: str) -> str:
        """The probed state of `spec` ("available", "loaded", "unavailable", ...; probed now if unknown)."""
        self.probe_model(spec)
        with self._lock:
            return self._model_state[spec]["state"]

    def probe_model(self, spec: str) -> None:
        """Find out, without network or big weights, whether `spec` can load; the worker loads it for real.

        closed-form: always available. A local folder in the diffusers layout, or a hub id already in the
        Hugging Face cache: available (loads with the first edit). A hub id not in the cache: downloaded by the
        first edit when online; "unavailable" when HF_HUB_OFFLINE is set or the hub cannot be reached (one
        connection attempt, at most a second). Each message says what to do.
        """
        with self._lock:
            if spec in self._model_state:
                return
        try:
            state = _probe(spec)
        except ValueError as exc:
            state = ("error", "", str(exc))
        self._set_model_state(spec, *state)

    def require_model(self, spec: str) -> None:
        """Refuse, before anything is queued, a model that cannot load now (ValueError with the whole message:
        what is missing, the download command, the closed-form demo). Takes well under a second offline: the
        file system, the Hugging Face cache and (for a hub id not in it) one connection attempt to the hub."""
        with self._lock:
            known = self._model_state.get(spec, {}).get("state")
        if known not in ("loaded", "available"):
            with self._lock:
                self._model_state.pop(spec, None)  # the network or the cache may have changed: look again
            self.probe_model(spec)
        with self._lock:
            status = dict(self._model_state[spec])
        if status["state"] in ("unavailable", "error"):
            raise ValueError(status["message"] or f"the model {spec} cannot be loaded")

    def _set_model_state(self, spec: str, state: str, source: str = "", message: str = "") -> None:
        with self._lock:
            self._model_state[spec] = {"spec": spec, "state": state, "source": source, "message": message}

    # ------------------------------------------------------------------ edit jobs
    def checked_edit_config(self, session: Session, settings: EditSettings):
        """The EditConfig for the session's selection, or ValueError saying why the edit cannot run.
        Shared by the worker path and the Space GPU path; call it holding `session.lock`."""
        from engine.edit import check_edit_inputs

        if session.job.active:
            raise ValueError("an edit is already running in this session")
        if session.mask_task.active:
            raise ValueError("a SAM click is still being worked on: wait for its mask (or cancel it) first")
        config = settings.to_config(self.model_spec(session))
        config.up = tuple(session.up)  # the edit's orbit cameras circle the scene's up axis
        check_edit_inputs(session.scene, session.selection, config)
        if not bool((session.selection > config.mask_threshold).any()):
            raise ValueError("nothing is selected: select the part to edit first (Mask tab)")
        self.require_model(config.model)  # a missing model is refused here, before anything is queued
        return config

    def checked_generate_config(self, session: Session, settings: GenerateSettings):
        """The GenerateConfig for these settings (model defaulting to the session's), or ValueError saying
        what to fix. Shared by the worker path and the Space GPU path."""
        from engine.generate import check_generate_config
        from engine.guidance import parse_model_spec

        spec = _normalise_colour_spec((settings.model or "").strip()) or self.model_spec(session)
        parse_model_spec(spec)
        self.require_model(spec)
        config = settings.to_config(spec)
        if settings.init == INIT_CURRENT:  # the primitives are built +z up (config.up's default)
            config.up = tuple(session.up)
        check_generate_config(config)
        return config

    def start(self, session: Session, settings: EditSettings) -> None:
        """Queue an edit of the session's selection; bad input raises ValueError before anything is queued."""
        with session.lock:
            config = self.checked_edit_config(session, settings)
            view = session.view
            session.job = JobStatus(state="queued", total=config.steps, message=self._queued_message(),
                                    before=backend.render_view(session.scene, view.cameras(256, 256)))
            session.job_view = view
            with self._lock:  # registered before the worker's first event can be matched against it
                future = self.worker.start_edit(session.id, config)
                self._job_ids[future.command_id] = session.id
            session.job.job_id = str(future.command_id)
        with self._lock:
            state = self._model_state.get(config.model, {}).get("state")
        if state != "loaded":
            self._set_model_state(config.model, "loading", "", "the engine is loading it for this edit")
        if session.viewer is not None:
            session.viewer.set_editing(True)

    def start_generate(self, session: Session, settings: GenerateSettings) -> None:
        """Queue a text-to-3D generation; its result opens as the session's scene (undo goes back). Bad input
        raises ValueError before anything is queued."""
        config = self.checked_generate_config(session, settings)
        with session.lock:
            if session.job.active:
                raise ValueError("an edit or generation is already running in this session")
            view = session.view
            session.job = JobStatus(state="queued", total=config.steps, message=self._queued_message(),
                                    before=backend.render_view(session.scene, view.cameras(256, 256)))
            session.job_view = view
            with self._lock:  # registered before the worker's first event can be matched against it
                future = self.worker.start_generate(session.id, config, from_current=settings.init == INIT_CURRENT)
                self._job_ids[future.command_id] = session.id
                self._generations[future.command_id] = (f"generated: {config.prompt.strip()[:60]}", config.up)
            session.job.job_id = str(future.command_id)
        if session.viewer is not None:
            session.viewer.set_editing(True)

    def _queued_message(self) -> str:
        if getattr(self.worker, "warming_up", False):
            return "waiting for the engine: warming up (the first start compiles the renderer)"
        return "waiting for the engine"

    # ------------------------------------------------------------------ mask tasks (SAM, lifting)
    def start_mask_task(self, session: Session, action: str, work, on_result, *, model: str | None = None) -> None:
        """Run `work(progress, should_stop)` on the engine thread; its progress shows in `session.mask_task`,
        and `on_result(result)` runs when it ends (on the worker thread). One task per session at a time.
        model: the guidance model spec the task reads, loaded by the worker's loader thread (the task waits
        aside meanwhile) and passed as `work(progress, should_stop, model)`."""
        with session.lock:
            if session.mask_task.active:
                raise ValueError(f"the previous {session.mask_task.kind or 'mask task'} is still being worked "
                                 "on; wait for it or cancel it")
            session.check_mask_editable()
            session.mask_task = JobStatus(kind=MASK_TASK_LABELS.get(action, action), state="queued",
                                          message="waiting for the engine", started_at=time.time())
            session.notice = ""
            session.revision += 1
        with self._lock:
            future = self.worker.start_task(session.id, action, work, model=model)
            self._task_ids[future.command_id] = session.id

        def finished(done) -> None:
            with self._lock:
                self._task_ids.pop(future.command_id, None)
            try:
                result = done.result()
                if result is None:
                    state, message = "cancelled", "cancelled"
                else:
                    on_result(result)
                    state, message = "done", ""
            except Exception as exc:  # noqa: BLE001 - shown in the Mask panel, like a gesture's warning
                state, message = "error", str(exc) or type(exc).__name__
            with session.lock:
                session.mask_task.state, session.mask_task.message = state, message
                if state == "error":
                    session.notice = message
                session.revision += 1
            if session.viewer is not None and state == "error":
                session.viewer.set_status(f"⚠️ {message}")

        future.add_done_callback(finished)

    def cancel_mask_task(self, session: Session) -> None:
        if session.mask_task.active:
            self.worker.cancel(session.id)

    def pause(self, session: Session) -> None:
        if session.job.state in ("queued", "running"):
            self.worker.pause(session.id)
            self._set_job(session, state="paused")

    def resume(self, session: Session) -> None:
        if session.job.state == "paused":
            self.worker.resume(session.id)
            self._set_job(session, state="running")

    def cancel(self, session: Session) -> None:
        if session.job.active:
            self.worker.resume(session.id)
            self.worker.cancel(session.id)
            self._set_job(session, message="cancelling…")

    @staticmethod
    def _set_job(session: Session, **changes) -> None:
        with session.lock:
            for key, value in changes.items():
                setattr(session.job, key, value)

    # ------------------------------------------------------------------ worker events (worker thread)
    def _on_event(self, event) -> None:
        from engine.worker import (DoneEvent, ErrorEvent, NoticeEvent, PreviewEvent, ProgressEvent, StateEvent,
                                   TaskEvent)

        session = self._session_for(event.session)
        if session is None:
            return
        if isinstance(event, StateEvent):
            with session.lock:
                session.history_labels, session.history_cursor = list(event.labels), event.cursor
                session.revision += 1
            return
        if isinstance(event, TaskEvent):
            with session.lock:
                task = session.mask_task
                task.state, task.step, task.total, task.message = "running", event.step, event.total, event.message
                session.revision += 1
            if session.viewer is not None:
                session.viewer.set_status(f"⏳ {event.message}")
            return
        with self._lock:
            is_job = event.job is not None and self._job_ids.get(event.job) == session.id
            is_task = event.job is not None and self._task_ids.get(event.job) == session.id
        if is_task and isinstance(event, NoticeEvent):  # a mask task waiting for its model to load
            with session.lock:
                session.mask_task.message = event.message
                session.revision += 1
            return
        if not is_job:
            return
        if isinstance(event, NoticeEvent):
            self._set_job(session, message=event.message)
            return
        if isinstance(event, ProgressEvent):
            self._model_loaded(session)
            with session.lock:
                job = session.job
                if job.state == "queued":
                    job.state, job.started_at, job.message = "running", time.time() - event.elapsed_s, ""
                job.step, job.total, job.eta_s = event.step, event.total, event.eta_s
                if "loss" in event.losses:
                    job.losses.append((event.step, float(event.losses["loss"])))
                if "psnr_ideal" in event.losses:
                    job.psnr_ideal = float(event.losses["psnr_ideal"])
        elif isinstance(event, PreviewEvent):
            with session.lock:
                session.job.preview = event.image
                session.job.preview_count += 1
            snapshot = getattr(event, "scene", None)  # the scene so far: both views show it live
            if snapshot is not None:
                session.set_live(snapshot, getattr(event, "mask", None))
                if session.viewer is not None:
                    session.viewer.show(snapshot, session.display_mask())
        elif isinstance(event, DoneEvent):
            self._job_finished(session, event)
        elif isinstance(event, ErrorEvent):
            if "load the diffusion model" in event.message or "cannot load" in event.message:
                self._set_model_state(self.model_spec(session), "unavailable", "", event.message)
            self._finish(session, event.job, "error", event.message or "error")  # the whole message

    def _session_for(self, session_id: str) -> Session | None:
        return next((s for s in self.registry.sessions() if s.id == session_id), None)

    def _model_loaded(self, session: Session) -> None:
        spec = self.model_spec(session)
        with self._lock:
            if self._model_state.get(spec, {}).get("state") == "loaded":
                return
        try:
            from engine.guidance import parse_model_spec

            parsed = parse_model_spec(spec)
            source = "built in (no weights)" if parsed.is_closed_form else parsed.location
        except ValueError:
            source = ""
        device = getattr(self.worker, "device", "")
        self._set_model_state(spec, "loaded", f"{source} · on {device}" if device else source)

    def _job_finished(self, session: Session, event) -> None:
        if event.cancelled:
            self._finish(session, event.job, "cancelled", event.message or "cancelled")
            return

        with self._lock:
            generated = self._generations.pop(event.job, None)

        def adopt() -> None:  # not on the worker thread: the snapshot is a worker command
            try:
                if generated is None:
                    self._mirror(session)
                else:  # a new object: open it like a loaded scene (fresh parts and view)
                    scene, _ = self._wait(self.worker.snapshot(session.id, copy=False))
                    name, up = generated
                    self._mirror(session, bundle=SceneBundle(scene, name, up=tuple(up), up_source="generated"))
                    self._save_up(session)
                    session.job_view = session.view
                    if session.viewer is not None:
                        session.viewer.frame(session.view)
                with session.lock:
                    view = getattr(session, "job_view", session.view)
                    session.job.preview = backend.render_view(session.scene, view.cameras(256, 256))
                    session.job.preview_count += 1
                self._finish(session, event.job, "done", event.message)
            except Exception as exc:  # noqa: BLE001
                log.exception("adopting the edit result failed")
                self._finish(session, event.job, "error", str(exc))

        threading.Thread(target=adopt, name="adopt-result", daemon=True).start()

    def _finish(self, session: Session, job_id, state: str, message: str) -> None:
        with self._lock:
            self._job_ids.pop(job_id, None)
            self._generations.pop(job_id, None)
        with session.lock:
            session.job.state = state
            session.job.message = message
            session.job.eta_s = None
            session.live = None
            session.revision += 1
        if session.viewer is not None:
            session.viewer.set_editing(False)
            session.push_to_viewer()


SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def _probe(spec: str) -> tuple[str, str, str]:
    """(state, source, message) of a model spec, from the file system, the hub cache and at most one quick
    connection attempt (see JobRunner.probe_model)."""
    from engine.guidance import parse_model_spec

    parsed = parse_model_spec(spec)  # ValueError for a malformed spec
    if parsed.is_closed_form:
        return "available", "built in (no weights)", ""
    if parsed.kind == "local":
        missing = [s for s in SUBFOLDERS if not (Path(parsed.location) / s).is_dir()]
        if missing:
            return ("unavailable", parsed.location,
                    f"{parsed.location} is not a diffusers model folder: missing {', '.join(m + '/' for m in missing)}")
        return "available", parsed.location, "loads with the first edit"
    cached = _hub_cache_path(parsed.location)
    if cached is not None:
        return "available", f"Hugging Face cache: {cached}", "loads with the first edit"
    folder = f"models/{parsed.location.split('/')[-1]}"
    get_it = (f"Download it once while online:\n  hf download {parsed.location} --local-dir {folder}\nthen start the "
              f"app with --model {folder} (or set SPLATEDIT_MODEL, or enter the folder in the Model tab). "
              "To try the editor without weights now: Model tab → \"Use closed-form demo (offline)\" "
              "(model closed-form:#d02020), which moves the selected part toward a colour.")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return ("unavailable", "", f"The model {parsed.location} is not on this machine (not in the Hugging Face "
                f"cache) and HF_HUB_OFFLINE is set, so it cannot be downloaded. {get_it}")
    if not _hub_reachable():
        return ("unavailable", "", f"The model {parsed.location} is not on this machine (not in the Hugging Face "
                f"cache) and the hub ({_hub_address()[0]}) cannot be reached from here, so it cannot be downloaded "
                f"now. {get_it}")
    return ("not downloaded", f"Hugging Face hub: {parsed.location}",
            f"Not in the local cache: the first edit downloads it (several GB; needs internet). {get_it}")


_REACHABLE: dict = {}  # (host, port) -> (checked at, reachable): one connection attempt per half minute
REACH_TIMEOUT_S = 1.0


def _hub_address() -> tuple[str, int]:
    """Where a download would connect first: the HTTPS proxy if one is set, else the hub (HF_ENDPOINT)."""
    from urllib.parse import urlparse

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def _hub_reachable() -> bool:
    """Whether a TCP connection to the hub (or the proxy) opens within REACH_TIMEOUT_S, name lookup included
    (done on a helper thread: an offline resolver can take many seconds to give up)."""
    import socket

    address = _hub_address()
    checked = _REACHABLE.get(address)
    if checked is not None and time.monotonic() - checked[0] < 30.0:
        return checked[1]
    outcome = [False]

    def attempt() -> None:
        try:
            socket.create_connection(address, timeout=REACH_TIMEOUT_S).close()
            outcome[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=attempt, name="hub-reachable", daemon=True)
    thread.start()
    thread.join(REACH_TIMEOUT_S + 0.2)
    _REACHABLE[address] = (time.monotonic(), outcome[0])
    return outcome[0]


def _hub_cache_path(repo_id: str) -> str | None:
    """The local snapshot folder of a hub model if it is fully in the Hugging Face cache, else None."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True, allow_patterns=["model_index.json"])
    except Exception:  # noqa: BLE001 - not cached, or no hub library: the loader will say why
        return None


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
