"""The engine thread: one worker owns the device and the models and serves every session's commands.

UI threads (one per browser session, the CLI, tests) never touch tensors being optimized. They call the
worker's methods, which enqueue a command and return a `concurrent.futures.Future` at once, and they read
events — through `subscribe(callback)` (called on the worker thread) or `events()` (a thread-safe queue):

    worker = EngineWorker(workspace="~/.splatedit/autosave")
    worker.load_scene("alice", scene, up=(0, -1, 0), up_source="format")  # a GaussianScene or a file path
    worker.set_mask("alice", weights)                 # [N] in [0, 1]; a history entry
    worker.set_up("alice", (0, 0, 1))                 # the user's up axis; a history entry too
    job = worker.start_edit("alice", EditConfig(prompt="a red scarf", model="closed-form:red"))
    gen = worker.start_generate("alice", GenerateConfig(prompt="a red apple", model="closed-form:red"))
    worker.cancel("alice")                            # immediate: stops within one step
    worker.undo("alice"); worker.redo("alice"); worker.export("alice", "out.ply")

A generation is a job like an edit (same events, pause/resume/cancel); when it finishes, its scene replaces the
session's scene as one history entry (with an all-zero mask and the generation's up), so undo brings the
previous scene, and its up, back.

Ordering: commands run in the order they were sent (FIFO). An edit (or generation) job occupies the worker
until it ends; between two of its steps the worker also runs the quick commands (anything but an edit) of
*other* sessions, so one session's long edit does not freeze another's mask or undo. A session's own commands
wait for its job. pause / resume / cancel act at once (they are flags read before every step, not queued
commands); cancel also drops that session's queued edits. While a job is paused, the worker keeps serving
other sessions' quick commands, but other edits wait.

Mask work (SAM on many views, lifting to 3D) runs here too, as a *task*: `start_task(session, action, fn)`
runs `fn(progress, should_stop)` on this thread between other sessions' edit steps, reports `TaskEvent`s and
stops at the next `progress(...)` call after `cancel`.

Models load on a loader thread, not on this one: a job whose model is not loaded yet waits aside ("parked",
with a `NoticeEvent` saying so) while the worker keeps running other sessions' commands and jobs; it comes back
to the front of the queue when the load ends, and Cancel ends it at once.

Failures: an exception inside a command or job becomes an `ErrorEvent` (and the future's exception) whose `kind`
says what the UI can do about it ("model-unavailable": the message says what to download); the session's
state and history are exactly as before (a job's result is adopted only when it finishes); the worker keeps
serving.

Each session's state — scene, mask, named parts, name and up axis — is its `History`, the one owner of it;
with a `workspace`, every change is autosaved to `workspace/<session id>/`, and `restore_session` brings it
back after a crash. Models are loaded once per spec and cached.

Modules, in reading order:

- events.py       the events, `SessionState`, `GenerateResult`, `TaskCancelled`, error kinds
- history.py      `History`: undo/redo over states (scene, mask, parts, name, up)
- persistence.py  `autosave` / `restore` / `describe_autosave` of a history in a folder
- models.py       `ModelCache`: load once per spec on a loader thread (also usable outside the worker)
- queue.py        `CommandQueue`: FIFO, quick commands vs tasks vs jobs, pause/cancel flags, parking,
                  where a queued job stands (`wait_of`)
- bus.py          `EventBus`: subscribers and event queues
- sessions.py     `SessionStore`: each session's history, autosaved, and its StateEvent
- run.py          `EditJob` / `GenerateJob` and `run_job`: the one way any runner (this worker, a ZeroGPU call) runs a job
- jobs.py         `Jobs`: the one shape of a job (edit, generate), tasks, the warm-up
- worker.py       `EngineWorker`: the public commands
"""

from .persistence import autosave, describe_autosave, has_autosave, restore
from .events import (
    ERROR_KINDS,
    DoneEvent,
    ErrorEvent,
    GenerateResult,
    NoticeEvent,
    PreviewEvent,
    ProgressEvent,
    SessionState,
    StateEvent,
    TaskCancelled,
    TaskEvent,
    WorkerEvent,
)
from .history import UP_SOURCES, History, State
from .models import ModelCache, Parked
from .queue import QueueWait
from .run import EditJob, GenerateJob, Progress, run_job
from .worker import EngineWorker

__all__ = [
    "ERROR_KINDS", "DoneEvent", "EditJob", "EngineWorker", "ErrorEvent", "GenerateJob", "GenerateResult", "History", "ModelCache",
    "NoticeEvent", "Parked", "PreviewEvent", "Progress", "ProgressEvent", "QueueWait", "SessionState", "State", "StateEvent",
    "TaskCancelled", "TaskEvent", "UP_SOURCES", "WorkerEvent", "autosave", "describe_autosave", "has_autosave",
    "restore", "run_job",
]
