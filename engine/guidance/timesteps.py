"""Which diffusion timesteps a distillation step samples: t ~ U[t_min, t_max], t_max optionally annealed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TimestepSchedule:
    """Uniform timesteps between fractions of the training schedule, one per view.

    Large t shapes coarse structure and colour, small t refines detail; annealing t_max down over the run
    (`t_max_end`) does the coarse part first. Fractions are of `num_train_timesteps` (1000 for SD).
    """

    t_min: float = 0.02
    """Lowest timestep, as a fraction of the training timesteps."""
    t_max: float = 0.98
    """Highest timestep at the first step."""
    t_max_end: float | None = None
    """If set, t_max moves linearly from `t_max` (first step) to this value (last step); never below t_min."""

    def __post_init__(self) -> None:
        for name in ("t_min", "t_max", "t_max_end"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
        if self.t_min > self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must not exceed t_max ({self.t_max})")

    def bounds(self, step: int, total_steps: int, num_train_timesteps: int) -> tuple[int, int]:
        """Inclusive integer range [lo, hi] of timesteps at `step` (0-based) of `total_steps`."""
        t_max = self.t_max
        if self.t_max_end is not None:
            progress = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
            t_max = max(self.t_max + (self.t_max_end - self.t_max) * progress, self.t_min)
        last = num_train_timesteps - 1
        lo = min(max(round(self.t_min * num_train_timesteps), 0), last)
        hi = min(max(round(t_max * num_train_timesteps), lo), last)
        return lo, hi

    def sample(
        self,
        batch: int,
        *,
        step: int,
        total_steps: int,
        num_train_timesteps: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """[batch] long timesteps, drawn on the generator's device (reproducible on CPU), moved to `device`."""
        lo, hi = self.bounds(step, total_steps, num_train_timesteps)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        t = torch.randint(lo, hi + 1, (batch,), generator=generator, device=gen_device)
        return t.to(device)
