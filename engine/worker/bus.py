"""Events out of the worker: subscribers called on the worker thread, or queues that collect events."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from .events import WorkerEvent

log = logging.getLogger(__name__)

Subscriber = Callable[[WorkerEvent], None]


class EventBus:
    """Delivers each event to every subscriber of its session (or of all sessions); thread-safe."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str | None, Subscriber]] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Subscriber, session: str | None = None) -> Callable[[], None]:
        """Call `callback(event)` for every event, or one session's; returns unsubscribe."""
        entry = (session, callback)
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def queue(self, session: str | None = None) -> "queue.Queue[WorkerEvent]":
        """A queue that receives every event (or one session's) from now on."""
        q: queue.Queue = queue.Queue()
        self.subscribe(q.put, session)
        return q

    def emit(self, event: WorkerEvent) -> None:
        with self._lock:
            targets = [fn for s, fn in self._subscribers if s is None or s == event.session]
        for fn in targets:
            try:
                fn(event)
            except Exception:  # a broken subscriber must not take the engine down
                log.exception("event subscriber failed on %s", type(event).__name__)
