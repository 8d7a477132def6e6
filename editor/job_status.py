"""JobStatus: what the page shows about a session's job (an edit, a generation, a mask task), and the ONE place
a progress record becomes that status — whichever runner (the local engine worker, a ZeroGPU GPU call) ran it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class JobStatus:
    """What the Edit panel shows about this session's current (or last) edit job."""

    job_id: str | None = None
    state: str = "idle"  # idle | queued | running | paused | done | cancelled | error
    step: int = 0
    total: int = 0
    started_at: float | None = None
    eta_s: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    preview: np.ndarray | None = None  # latest preview render, uint8 [H, W, 3]
    preview_count: int = 0
    before: np.ndarray | None = None  # render of the scene before the edit, same view as `preview`
    message: str = ""
    psnr_ideal: float | None = None  # latest PSNR against the ideal edit, when the edit's prior knows it
    kind: str = ""  # what a mask task is ("SAM click", "text selection"): the Mask panel's progress line says it

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running", "paused")

    def copy(self) -> "JobStatus":
        """A snapshot safe to hand to another thread (take it holding the session's lock)."""
        snapshot = JobStatus(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        snapshot.losses = list(self.losses)
        return snapshot


def apply_progress(job: JobStatus, *, step: int, total: int, elapsed_s: float, eta_s: float | None,
                   losses: dict, preview: np.ndarray | None = None) -> None:
    """One step's progress record into the job (hold the session's lock). `elapsed_s` is the job's own clock,
    so a wait for the engine or for a GPU is not counted in the speed the page shows."""
    if job.state == "queued":
        job.state = "running"
    if job.message.startswith(("waiting for", "loading the model")):  # stale once steps arrive
        job.message = ""
    job.started_at = time.time() - elapsed_s
    job.step, job.total, job.eta_s = step, total, eta_s
    if "loss" in losses:
        job.losses.append((step, float(losses["loss"])))
    if "psnr_ideal" in losses:
        job.psnr_ideal = float(losses["psnr_ideal"])
    if preview is not None:
        job.preview = preview
        job.preview_count += 1
