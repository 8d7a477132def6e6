"""Progress: the one record a running job reports after every step — an edit or a generation, on the engine
worker or in a ZeroGPU call (engine.worker.run.run_job passes the loops' records on as they are)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from torch import Tensor

from ..scene import GaussianScene


@dataclass(frozen=True)
class Progress:
    step: int  # steps done (1-based)
    total: int
    losses: dict[str, float]
    elapsed_s: float  # the job's own clock (a wait for the engine or a GPU is not in it)
    eta_s: float | None  # seconds left (EtaClock); None while the first steps are still being measured
    num_gaussians: int  # an edit: its trainable (masked) Gaussians now; a generation: all
    preview: np.ndarray | None = None  # [H, W, 3] uint8, every `preview_every` steps
    scene: GaussianScene | None = field(default=None, compare=False)  # edit, with each preview: the scene so far
    mask: Tensor | None = field(default=None, compare=False)  # [N'] its mask (densification changes N)
    resolution: int | None = None  # a generation: the render size of this step (it grows)

    def without_scene(self) -> "Progress":
        """The record without the scene so far (what a ZeroGPU stream sends: the preview is enough there)."""
        return replace(self, scene=None, mask=None)


class EtaClock:
    """Seconds left of a job, from what its steps cost so far.

    The first step is not counted: it pays the one-off costs (the renderer's kernels compiled, the model's first
    call on its device, caches filled), several times a later step's cost. Extrapolating from it told a user
    18:59 for a 3-minute edit. Until `settle` steps after it have run there is no estimate (None: the page says
    "estimating…"), then the mean cost of the latest `window` steps times the steps left (a window follows a
    cost that grows as densification adds Gaussians or a generation's render size grows). A step's cost is the
    time from the end of the step before to its own end, so what the job's caller does between steps (showing
    a preview, serving other sessions) counts; a gap over `outlier` times the median so far (a pause) counts
    as the median instead."""

    def __init__(self, *, settle: int = 3, window: int = 30, outlier: float = 10.0,
                 now: Callable[[], float] = time.perf_counter) -> None:
        if settle < 1 or window < settle or outlier <= 1:
            raise ValueError(f"need 1 <= settle <= window and outlier > 1, got {settle}, {window}, {outlier}")
        self.settle, self.window, self.outlier, self._now = settle, window, outlier, now
        self._costs: list[float] = []  # seconds per step, the first one excluded
        self._last: float | None = None  # when the previous step ended

    def tick(self, steps_left: int) -> float | None:
        """A step has just ended; seconds left for `steps_left` more, or None (too early to say)."""
        now = self._now()
        if self._last is not None:
            cost = now - self._last
            if self._costs:
                typical = sorted(self._costs)[len(self._costs) // 2]
                cost = typical if cost > self.outlier * typical else cost
            self._costs = (self._costs + [cost])[-self.window:]
        self._last = now
        if steps_left <= 0:
            return 0.0
        if len(self._costs) < self.settle:
            return None
        return sum(self._costs) / len(self._costs) * steps_left
