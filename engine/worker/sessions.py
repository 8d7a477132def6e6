"""Every session's History, autosaved after each change, and the StateEvent that tells the UI about it.

Used on the worker thread only (commands run there one at a time), so it needs no lock of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..optimize.memory import release_memory
from .persistence import autosave, has_autosave, restore
from .bus import EventBus
from .events import SessionState, StateEvent
from .history import History


class SessionStore:
    """Session id -> History; with a workspace, each change is autosaved to `workspace/<session id>/`."""

    def __init__(self, workspace: Path | None, bus: EventBus, flags: Callable[[str], tuple[bool, bool]]) -> None:
        """flags(session) -> (busy, paused): what the command queue says of the session's jobs."""
        self.workspace = workspace
        self._bus = bus
        self._flags = flags
        self._histories: dict[str, History] = {}

    def find(self, session: str) -> History | None:
        return self._histories.get(session)

    def get(self, session: str) -> History:
        """The session's history; ValueError when it has none (nothing was loaded or generated there)."""
        history = self._histories.get(session)
        if history is None:
            raise ValueError(f"session {session!r} has no scene; load a scene first")
        return history

    def open(self, session: str, history: History) -> None:
        """`history` becomes the session's (its previous one is forgotten); saved and announced."""
        self._histories[session] = history
        self.changed(session)

    def close(self, session: str) -> None:
        """Forget the session (its autosave stays on disk) and hand the freed memory back to the system: without
        it the RSS of a worker that closed a million-Gaussian session stays near its peak (bench/scale.py)."""
        if self._histories.pop(session, None) is not None:
            release_memory()

    def current(self, session: str) -> SessionState:
        state = self.get(session).current
        return SessionState(state.scene, state.mask, dict(state.parts), state.name, state.up, state.up_source,
                            state.id, self.get(session).token)

    # ------------------------------------------------------------------ persistence
    def changed(self, session: str) -> None:
        """After any history change: autosave, then tell the UI."""
        if self.workspace is not None:
            autosave(self.get(session), self.workspace / session)
        self._bus.emit(self.state_event(session))

    def restore(self, session: str, source: str | None = None) -> History:
        """The session's history becomes its autosave (or `source`'s, then saved under this session's id)."""
        if self.workspace is None:
            raise ValueError("this worker has no workspace to restore from")
        self._histories[session] = history = restore(self.workspace / (source or session))
        if source and source != session:
            self.changed(session)
        else:
            self._bus.emit(self.state_event(session))
        return history

    def saved(self) -> list[str]:
        """Session ids with an autosave in the workspace."""
        if self.workspace is None or not self.workspace.is_dir():
            return []
        return sorted(p.name for p in self.workspace.iterdir() if p.is_dir() and has_autosave(p))

    # ------------------------------------------------------------------ news
    def announce(self, session: str) -> None:
        """Tell the UI the session's state again (its job started, ended or paused); nothing for an unknown one."""
        if session in self._histories:
            self._bus.emit(self.state_event(session))

    def state_event(self, session: str) -> StateEvent:
        busy, paused = self._flags(session)
        history = self._histories.get(session)
        if history is None:
            return StateEvent(session, None, 0, False, (), -1, False, False, busy, paused)
        now = history.current
        return StateEvent(session, None, len(now.scene), now.mask is not None, tuple(history.labels()),
                          history.cursor, history.can_undo, history.can_redo, busy, paused, now.up, now.up_source)
