"""DreamTime's schedule: one non-increasing t per step, inside the range, spending steps where W is large."""

from __future__ import annotations

import pytest
import torch

from engine.guidance.dreamtime import MonotoneSchedule


@pytest.mark.parametrize("weighting", ["dreamtime", "linear"])
@pytest.mark.parametrize("steps", [1, 7, 300])
def test_monotone_and_within_bounds(weighting, steps):
    schedule = MonotoneSchedule(t_min=0.1, t_max=0.9, weighting=weighting)
    ts = [schedule.timestep(i, steps, 1000) for i in range(steps)]
    assert all(a >= b for a, b in zip(ts, ts[1:]))
    assert all(100 <= t <= 900 for t in ts)
    lo, hi = schedule.bounds(steps - 1, steps, 1000)
    assert lo == hi == ts[-1]


def test_steps_are_spent_in_proportion_to_the_prior_weight():
    """The share of steps above m1 = 0.8 T is W's mass there (flat on [0.5, 0.8], Gaussian tails)."""
    schedule = MonotoneSchedule(t_min=0.02, t_max=0.98)
    w = schedule.weights(1000)
    mass_above = float(w[801 - 20:].sum() / w.sum())
    ts = torch.tensor([schedule.timestep(i, 1000, 1000) for i in range(1000)])
    assert abs(float((ts > 800).float().mean()) - mass_above) < 0.01
    assert 0.2 < mass_above < 0.5  # the fall-off above m1 (s1 = 0.3) holds a real share; below m2 almost none
    assert float((ts < 300).float().mean()) < 0.02


def test_linear_weighting_falls_evenly_and_sample_ignores_the_generator():
    schedule = MonotoneSchedule(t_min=0.2, t_max=0.9, weighting="linear")
    ts = [schedule.timestep(i, 8, 1000) for i in range(8)]
    gaps = [a - b for a, b in zip(ts, ts[1:])]
    assert max(gaps) - min(gaps) <= 1
    t = schedule.sample(3, step=2, total_steps=8, num_train_timesteps=1000, generator=torch.Generator())
    assert t.tolist() == [ts[2]] * 3


@pytest.mark.parametrize("kwargs", [{"t_min": 0.9, "t_max": 0.1}, {"weighting": "cosine"}, {"t_max": 1.2},
                                    {"m2": 0.9}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        MonotoneSchedule(**kwargs)
