"""The worker's command queue: who runs next, the flags that pause and cancel jobs, and jobs set aside.

Three kinds of command, by how long they hold the engine thread:

- quick: a history change, an export, a snapshot — milliseconds.
- task: mask work (SAM views, lifting) — seconds, cancellable, run between other sessions' job steps like a
  quick command, so a click is never stuck behind someone else's long edit.
- job: an edit or a generation — minutes, pausable and cancellable; one at a time.

Commands run in the order they were sent (FIFO). While a job runs, it calls `between_steps` before every step:
the queue then runs the quick commands and tasks of *other* sessions (its own session's commands wait for it),
and holds the job there while it is paused. A job whose model is still loading is *parked*: set aside (its
session's later commands wait behind it) until `unpark(spec)`, then put back at the front.

pause / resume / cancel are flags (a `Control` per task or job), set at once from any thread, not queued.
`wait_of(command_id)` says where a queued job stands (the jobs ahead, the running one's time left), so a session
waiting behind another session's long edit can be told why.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

QUICK, TASK, JOB = "quick", "task", "job"


@dataclass
class Control:
    """Flags a task or job reads before every step; set from any thread."""

    cancel: threading.Event = field(default_factory=threading.Event)
    unpaused: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.unpaused.set()


@dataclass
class Command:
    id: int
    session: str
    action: str
    run: Callable[["Command"], Any]
    future: Future
    kind: str = QUICK
    control: Control | None = None  # tasks and jobs
    parked_on: str | None = None  # the model spec this command waits for


@dataclass(frozen=True)
class QueueWait:
    """Where a queued job stands: the jobs that run before it, the running one first, as (session, action), and
    the seconds the running job has left by its last progress record (None before its first one)."""

    ahead: tuple[tuple[str, str], ...]
    running_eta_s: float | None


class CommandQueue:
    """Pending and parked commands, the live controls and the running job; thread-safe."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._ids = itertools.count(1)
        self._pending: deque[Command] = deque()
        self._parked: list[Command] = []
        self._controls: dict[int, tuple[str, Control]] = {}  # command id -> (session, control) of live ones
        self._paused: set[str] = set()
        self._running: Command | None = None
        self._eta: tuple[float, float] | None = None  # the running job's (eta_s, time.monotonic() when told)
        self._closed = False

    # ------------------------------------------------------------------ in (any thread)
    def submit(self, session: str, action: str, run: Callable[[Command], Any], kind: str = QUICK) -> Future:
        """Queue `run(command)`; the future's `command_id` names it. A job of a paused session starts paused."""
        if not isinstance(session, str) or not session:
            raise ValueError("session must be a non-empty string id")
        future: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine worker has shut down")
            control = None if kind == QUICK else Control()
            if kind == JOB and session in self._paused:
                control.unpaused.clear()
            cmd = Command(next(self._ids), session, action, run, future, kind, control)
            future.command_id = cmd.id  # type: ignore[attr-defined]
            if control is not None:
                self._controls[cmd.id] = (session, control)
            self._pending.append(cmd)
            self._cv.notify()
        return future

    def pause(self, session: str) -> None:
        """Hold the session's job before its next step; its jobs queued later start paused too."""
        with self._cv:
            self._paused.add(session)
        for control in self._session_controls(session):
            control.unpaused.clear()

    def resume(self, session: str) -> None:
        with self._cv:
            self._paused.discard(session)
        for control in self._session_controls(session):
            control.unpaused.set()

    def cancel(self, session: str) -> None:
        """Cancel the session's tasks and jobs (running, queued or parked) and end its pause; a parked one goes
        back to the front, where it ends as cancelled before start."""
        with self._cv:
            self._paused.discard(session)
        for control in self._session_controls(session):
            control.cancel.set()
            control.unpaused.set()
        with self._cv:
            waiting = [c for c in self._parked if c.session == session]
            for cmd in waiting:
                self._parked.remove(cmd)
                self._pending.appendleft(cmd)
            if waiting:
                self._cv.notify_all()

    def close(self) -> set[str]:
        """Accept no more commands; returns the sessions with queued or running commands."""
        with self._cv:
            self._closed = True
            sessions = {cmd.session for cmd in self._pending}
            if self._running is not None:
                sessions.add(self._running.session)
            self._cv.notify_all()
        return sessions

    # ------------------------------------------------------------------ reading
    def flags(self, session: str) -> tuple[bool, bool]:
        """(busy, paused): the session has a live task or job; it is paused (or one of them is)."""
        with self._cv:
            controls = [c for s, c in self._controls.values() if s == session]
            return bool(controls), session in self._paused or any(not c.unpaused.is_set() for c in controls)

    def has_pending(self, action: str) -> bool:
        with self._cv:
            return any(c.action == action for c in self._pending)

    def wait_of(self, command_id: int) -> QueueWait | None:
        """Where the pending job `command_id` stands; None when it is not pending (running, parked, done).
        Ahead of it: the running job, jobs parked on their model (they come back to the front), then the jobs
        sent before it. Quick commands and tasks are not counted: they run between job steps."""
        with self._cv:
            index = next((i for i, c in enumerate(self._pending) if c.id == command_id), None)
            if index is None:
                return None
            jobs = [c for c in self._parked if c.kind == JOB]
            jobs += [c for c in list(self._pending)[:index] if c.kind == JOB]
            eta = None
            if self._running is not None:
                jobs.insert(0, self._running)
                if self._eta is not None:
                    eta = max(0.0, self._eta[0] - (time.monotonic() - self._eta[1]))
            return QueueWait(tuple((c.session, c.action) for c in jobs), eta)

    def note_eta(self, cmd: Command, eta_s: float | None) -> None:
        """The running job `cmd` reported a progress record: its estimated seconds left (for `wait_of`)."""
        with self._cv:
            if self._running is cmd and eta_s is not None:
                self._eta = (float(eta_s), time.monotonic())

    def _session_controls(self, session: str) -> list[Control]:
        with self._cv:
            return [c for s, c in self._controls.values() if s == session]

    # ------------------------------------------------------------------ out (the engine thread)
    def take(self) -> Command | None:
        """The next command that may run, waiting for one; None once closed with nothing left to run."""
        with self._cv:
            while True:
                cmd = self._next()
                if cmd is not None or (self._closed and not self._pending and not self._parked):
                    return cmd
                self._cv.wait(0.5)

    def _next(self, skip_session: str | None = None, quick_only: bool = False) -> Command | None:
        """(holding _cv) The first pending command that may run now: not of a session whose job is parked
        (its own commands keep their order behind that job)."""
        parked = {c.session for c in self._parked}
        for cmd in self._pending:
            if cmd.session in parked or cmd.session == skip_session or (quick_only and cmd.kind == JOB):
                continue
            self._pending.remove(cmd)
            return cmd
        return None

    @contextmanager
    def running(self, cmd: Command) -> Iterator[None]:
        """While a job runs: it is the running command; afterwards its control is dropped."""
        with self._cv:
            self._running, self._eta = cmd, None
        try:
            yield
        finally:
            with self._cv:
                self._running, self._eta = None, None
                self._controls.pop(cmd.id, None)

    def between_steps(self, cmd: Command, execute: Callable[[Command], None]) -> bool:
        """Called by a job before each of its steps: run other sessions' quick commands and tasks (also while
        the job is paused, which holds it here); True when the job is cancelled."""
        control = cmd.control
        self._serve_others(cmd.session, execute)
        while not control.unpaused.wait(0.05):
            self._serve_others(cmd.session, execute)
        return control.cancel.is_set()

    def _serve_others(self, running_session: str, execute: Callable[[Command], None]) -> None:
        while True:
            with self._cv:
                cmd = self._next(skip_session=running_session, quick_only=True)
            if cmd is None:
                return
            execute(cmd)

    def release(self, cmd: Command) -> None:
        """A task or job has ended: its control goes (cancel and pause no longer reach it)."""
        with self._cv:
            self._controls.pop(cmd.id, None)

    def park(self, cmd: Command, spec: str, settled: Callable[[str], bool]) -> bool:
        """Set `cmd` aside until `unpark(spec)`; its control stays (Cancel still reaches it). When the model
        settled meanwhile (`settled(spec)`), `cmd` goes back to the front instead; returns whether it was parked.
        Checking `settled` under this queue's lock closes the race with the loader's `unpark`."""
        with self._cv:
            cmd.parked_on = spec
            if settled(spec):
                self._pending.appendleft(cmd)
                self._cv.notify_all()
                return False
            self._parked.append(cmd)
            return True

    def unpark(self, spec: str) -> None:
        """`spec`'s load ended: the commands waiting for it go back to the front of the queue, in their order."""
        with self._cv:
            waiting = [c for c in self._parked if c.parked_on == spec]
            for cmd in reversed(waiting):
                self._parked.remove(cmd)
                self._pending.appendleft(cmd)
            self._cv.notify_all()
