"""Monotone timestep schedules: DreamTime's prioritized one (Huang et al., ICLR 2024) and a plain linear fall.

Why. Uniformly random t asks the model for coarse layout (large t) and fine detail (small t) at every step, in
any order; a diffusion *sampler* goes strictly from large t to small. DreamTime ("DreamTime: An Improved
Optimization Strategy for Diffusion-Guided 3D Generation") aligns the optimization with sampling: step i of N
uses one deterministic timestep that never increases,

    t(i) = argmin_t | sum_{t'=t}^{t_hi} p(t') - i / N |,    p(t) = W(t) / sum_t W(t),

so the run spends a share p(t) of its steps near each t. DreamTime's prior W is flat on [m2, m1] and falls off as
a Gaussian on either side:

    W(t) = exp(-(t - m1)^2 / (2 s1^2))  for t > m1
           1                             for m2 <= t <= m1
           exp(-(t - m2)^2 / (2 s2^2))  for t < m2

with the paper's m1 = 800, m2 = 500, s1 = 300, s2 = 100 of 1000 training steps (fractions 0.8, 0.5, 0.3, 0.1
here, so they scale with the model's T). The paper's full W also multiplies in the diffusion training weight;
we use the prior part alone, the form its public re-implementations use (stated, not hidden).

`weighting="linear"` makes W constant: t falls linearly from t_hi to t_lo, DreamCatalyst's schedule (its released
code decreases t linearly from 0.9 to 0.2 of T over the run).

Both have the `sample` / `bounds` shape of `TimestepSchedule` (timesteps.py), so every loss takes either one;
every view of a step gets the same t and nothing is drawn from the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

WEIGHTINGS = ("dreamtime", "linear")


@dataclass(frozen=True)
class MonotoneSchedule:
    """One non-increasing timestep per step in [t_min, t_max] (fractions of T), shaped by `weighting`."""

    t_min: float = 0.02
    t_max: float = 0.98
    weighting: str = "dreamtime"
    m1: float = 0.8
    """DreamTime: upper end of the flat part of W (the paper's 800 of 1000)."""
    m2: float = 0.5
    """DreamTime: lower end of the flat part (500 of 1000)."""
    s1: float = 0.3
    """DreamTime: width of W's fall-off above m1 (300 of 1000)."""
    s2: float = 0.1
    """DreamTime: width of W's fall-off below m2 (100 of 1000)."""

    def __post_init__(self) -> None:
        for name in ("t_min", "t_max", "m1", "m2"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
        if self.t_min > self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must not exceed t_max ({self.t_max})")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown schedule weighting {self.weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if self.m2 > self.m1 or self.s1 <= 0 or self.s2 <= 0:
            raise ValueError("DreamTime needs m2 <= m1 and s1, s2 > 0")

    def _range(self, num_train_timesteps: int) -> tuple[int, int]:
        last = num_train_timesteps - 1
        lo = min(max(round(self.t_min * num_train_timesteps), 0), last)
        return lo, min(max(round(self.t_max * num_train_timesteps), lo), last)

    def weights(self, num_train_timesteps: int) -> Tensor:
        """W(t) for every integer t in [lo, hi], float64 [hi - lo + 1]."""
        lo, hi = self._range(num_train_timesteps)
        t = torch.arange(lo, hi + 1, dtype=torch.float64) / num_train_timesteps
        if self.weighting == "linear":
            return torch.ones_like(t)
        above = torch.exp(-((t - self.m1) ** 2) / (2 * self.s1**2))
        below = torch.exp(-((t - self.m2) ** 2) / (2 * self.s2**2))
        return torch.where(t > self.m1, above, torch.where(t < self.m2, below, torch.ones_like(t)))

    def timestep(self, step: int, total_steps: int, num_train_timesteps: int) -> int:
        """t(i) for 0-based `step` of `total_steps`, i / N taken at the step's middle, (step + 0.5) / N: each
        step stands for its share of the run (at i / N = 1 exactly the formula jumps to t_lo, whatever W is)."""
        lo, hi = self._range(num_train_timesteps)
        p = self.weights(num_train_timesteps)
        p = p / p.sum()
        tail = torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])  # tail[k] = sum of p over t >= lo + k
        progress = min(max((step + 0.5) / max(total_steps, 1), 0.0), 1.0)
        return lo + int(torch.argmin((tail - progress).abs()))

    def bounds(self, step: int, total_steps: int, num_train_timesteps: int) -> tuple[int, int]:
        """The single timestep of `step`, as an inclusive range [t, t] (TimestepSchedule's shape)."""
        t = self.timestep(step, total_steps, num_train_timesteps)
        return t, t

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
        """[batch] long, every view at t(step); `generator` is accepted and not used (nothing random)."""
        t = self.timestep(step, total_steps, num_train_timesteps)
        return torch.full((batch,), t, dtype=torch.long, device=device)
