"""AppConfig: every option of `python app.py`, one field each, shared by the CLI and the tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def running_in_space() -> bool:
    """True inside a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


@dataclass
class AppConfig:
    host: str = "127.0.0.1"
    """Interface the Gradio page (and local Viser viewers) bind to; 127.0.0.1 keeps it on this machine."""
    port: int = 7860
    """Port of the Gradio page (0 picks a free one)."""
    viser_port: int = 8080
    """First port tried for the per-session Viser viewers (each session takes the next free one)."""
    share: bool = False
    """Ask Gradio for a public share link. Viser ports are not shared, so the page uses the streamed viewer."""
    space: bool = False
    """Hugging Face Space mode: one port, no Viser; streamed renders with orbit controls + gr.Model3D."""
    scene: Path | None = None
    """Scene opened in every new session instead of the bundled default scene."""
    model: str | None = None
    """Guidance model (hub id, local directory, or `closed-form:<colour>`); None = the engine's default."""
    workspace: Path = field(default_factory=lambda: Path("workspace"))
    """Where uploads, exports and autosaves of each session are written."""
    sam_checkpoint: Path | None = None
    """SAM checkpoint for the SAM click tool (sam_vit_b/l/h .pth); None disables the tool with instructions."""
    max_upload_mb: float = 200.0
    """Largest accepted upload, in megabytes."""
    max_viewers: int = 16
    """Most Viser viewers alive at once; further sessions get the streamed viewer only."""
    session_ttl_s: float = 3600.0
    """Idle sessions older than this are closed (their viewer port and memory freed)."""

    @property
    def use_viser(self) -> bool:
        """Viser needs a second port that a Space or a share tunnel cannot reach."""
        return not (self.space or self.share)
