"""What the worker tells its callers: events (on the worker thread, to subscribers), the state a session is in,
and the results its futures resolve to. Plain data, plus the one rule that turns an exception into an error kind.

Every event names its session and the command id (`Future.command_id`) of the job it belongs to (None for
session-wide news such as a `StateEvent`). The UI branches on the event's type and, for errors, on `kind`,
never on message text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ..guidance.base import ModelUnavailableError
from ..scene import GaussianScene
from ..up import Up

# ErrorEvent.kind values: what the UI may do about a failure.
MODEL_UNAVAILABLE = "model-unavailable"  # the model's weights cannot be loaded: mark it unavailable, say what to get
INVALID_INPUT = "invalid-input"  # a ValueError: the request itself is wrong (empty prompt, nothing selected, ...)
FILE_ERROR = "file"  # reading or writing a file failed (missing path, permissions, disk full)
INTERNAL = "internal"  # anything else: a bug or a device failure; the session is unchanged
ERROR_KINDS = (MODEL_UNAVAILABLE, INVALID_INPUT, FILE_ERROR, INTERNAL)


@dataclass(frozen=True)
class WorkerEvent:
    session: str
    job: int | None  # the command id (Future.command_id) this event belongs to


@dataclass(frozen=True)
class ProgressEvent(WorkerEvent):
    step: int
    total: int
    losses: dict[str, float]
    elapsed_s: float
    eta_s: float | None  # None: still estimating (engine.optimize.progress.EtaClock)
    num_gaussians: int


@dataclass(frozen=True)
class PreviewEvent(WorkerEvent):
    step: int
    image: np.ndarray  # [H, W, 3] uint8
    scene: GaussianScene | None = None  # the scene so far (CPU copy) for viewers that update in place
    mask: Tensor | None = None  # [N'] its mask


@dataclass(frozen=True)
class DoneEvent(WorkerEvent):
    action: str  # what finished: "edit", "generate", "load", "mask", "undo", "redo", "export", "restore", "up"
    cancelled: bool = False
    message: str = ""


@dataclass(frozen=True)
class ErrorEvent(WorkerEvent):
    action: str
    message: str  # one paragraph for the user (a missing model's message includes download instructions)
    kind: str = INTERNAL  # one of ERROR_KINDS, from the exception's type (error_kind)


@dataclass(frozen=True)
class StateEvent(WorkerEvent):
    """A session's state after any change: what the history panel and toolbar show."""

    num_gaussians: int
    has_mask: bool
    labels: tuple[str, ...]
    cursor: int
    can_undo: bool
    can_redo: bool
    busy: bool  # an edit of this session is running or queued
    paused: bool
    up: Up = (0.0, 0.0, 1.0)  # the current state's up axis (unit vector)
    up_source: str = "default"  # how it was found (engine.worker.history.UP_SOURCES)


@dataclass(frozen=True)
class TaskEvent(WorkerEvent):
    """Progress of a task (SAM views segmented, lifting): `step` of `total`, and what is being done."""

    action: str
    step: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class NoticeEvent(WorkerEvent):
    """A job is waiting for something the user should know about (its model loading)."""

    message: str


@dataclass(frozen=True)
class SessionState:
    """A session's current history state, as `current(session)` returns it (references, not copies)."""

    scene: GaussianScene
    mask: Tensor | None
    parts: dict[str, Tensor]  # name -> weights [N], in order
    name: str
    up: Up = (0.0, 0.0, 1.0)
    up_source: str = "default"
    state_id: int = -1  # the history state's id (a job started from it names it: History.push_result)
    history_token: str = ""  # which history (a scene opened anew starts another; ids restart there)


class TaskCancelled(Exception):
    """Raised by a task's `progress(...)` once the task is cancelled; the worker ends the task quietly."""


@dataclass(frozen=True)
class GenerateResult:
    """What a generation job's future resolves to."""

    scene: GaussianScene | None  # the generated scene (cancelled: the scene so far, not adopted; None: never ran)
    steps_done: int
    cancelled: bool = False
    up: Up = (0.0, 0.0, 1.0)  # the generated object's up axis (GenerateConfig.up)


def error_kind(exc: BaseException) -> str:
    """The ErrorEvent kind of a failure, from its type: the loader raises ModelUnavailableError (an OSError)
    when weights cannot be had, so it is tested before the other OSErrors."""
    if isinstance(exc, ModelUnavailableError):
        return MODEL_UNAVAILABLE
    if isinstance(exc, ValueError):
        return INVALID_INPUT
    if isinstance(exc, OSError):
        return FILE_ERROR
    return INTERNAL


def user_message(exc: BaseException) -> str:
    """The exception as one message for the user; user-fixable errors need no type name."""
    if isinstance(exc, (ValueError, OSError)):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
