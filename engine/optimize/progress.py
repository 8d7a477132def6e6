"""Progress: the one record a running job reports after every step — an edit or a generation, on the engine
worker or in a ZeroGPU call (engine.worker.run.run_job passes the loops' records on as they are)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from torch import Tensor

from ..scene import GaussianScene


@dataclass(frozen=True)
class Progress:
    step: int  # steps done (1-based)
    total: int
    losses: dict[str, float]
    elapsed_s: float  # the job's own clock (a wait for the engine or a GPU is not in it)
    eta_s: float
    num_gaussians: int  # an edit: its trainable (masked) Gaussians now; a generation: all
    preview: np.ndarray | None = None  # [H, W, 3] uint8, every `preview_every` steps
    scene: GaussianScene | None = field(default=None, compare=False)  # edit, with each preview: the scene so far
    mask: Tensor | None = field(default=None, compare=False)  # [N'] its mask (densification changes N)
    resolution: int | None = None  # a generation: the render size of this step (it grows)

    def without_scene(self) -> "Progress":
        """The record without the scene so far (what a ZeroGPU stream sends: the preview is enough there)."""
        return replace(self, scene=None, mask=None)
