import pytest
import torch

from engine.guidance import TimestepSchedule


def test_samples_stay_in_bounds_and_cover_them():
    schedule = TimestepSchedule(t_min=0.2, t_max=0.5)
    t = schedule.sample(4000, step=0, total_steps=1, num_train_timesteps=1000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long
    assert int(t.min()) == 200 and int(t.max()) == 500


def test_annealing_moves_t_max_linearly_to_the_end_value():
    schedule = TimestepSchedule(t_min=0.02, t_max=0.98, t_max_end=0.5)
    assert schedule.bounds(0, 101, 1000) == (20, 980)
    assert schedule.bounds(50, 101, 1000) == (20, 740)
    assert schedule.bounds(100, 101, 1000) == (20, 500)
    low = TimestepSchedule(t_min=0.3, t_max=0.9, t_max_end=0.0)
    assert low.bounds(99, 100, 1000) == (300, 300)  # never below t_min


def test_same_seed_same_timesteps():
    schedule = TimestepSchedule()
    draw = lambda: schedule.sample(8, step=3, total_steps=10, num_train_timesteps=1000,
                                   generator=torch.Generator().manual_seed(7))
    assert torch.equal(draw(), draw())


@pytest.mark.parametrize("kwargs", [{"t_min": -0.1}, {"t_max": 1.5}, {"t_min": 0.6, "t_max": 0.5}, {"t_max_end": 2.0}])
def test_bad_fractions_are_refused(kwargs):
    with pytest.raises(ValueError):
        TimestepSchedule(**kwargs)
