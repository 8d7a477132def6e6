"""AppContext: what every panel builder needs — the config, the sessions, the engine link, shared components.

Panels are built in order by editor.page; a panel that must refresh another panel's component (e.g. the
streamed view after a mask change) finds it here instead of importing the other panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import AppConfig
from .session import Session, SessionRegistry


@dataclass
class AppContext:
    config: AppConfig
    registry: SessionRegistry
    link: Any  # editor.engine_link.EngineLink: open, restore, undo/redo, export, mask tasks via the engine worker
    models: Any  # editor.models.ModelChoice: the session's model and its status
    runner: Any  # editor.runners.Runner: how an edit or a generation runs (local worker or ZeroGPU)
    masking: Any  # editor.masking.Masking: selection tools applied to a session
    shared: dict[str, Any] = field(default_factory=dict)  # name -> gradio component, filled while building
    change_events: list = field(default_factory=list)  # events after which the page re-syncs (editor.page)

    def changed(self, event):
        """Mark a Gradio event as one that may change the scene, the selection or the view."""
        self.change_events.append(event)
        return event

    def session(self, request) -> Session:
        """The Session of the page (or gradio_client Client) that sent `request` (a gr.Request)."""
        session_id = getattr(request, "session_hash", None)
        if not session_id:
            raise ValueError("this action needs a browser session (no session hash in the request)")
        return self.registry.get(session_id)
