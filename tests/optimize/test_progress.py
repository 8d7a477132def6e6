"""EtaClock: an honest first estimate (issue 26.8: 18:59 was shown for a 3-minute edit)."""

import pytest

from engine.optimize.progress import EtaClock


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _run(clock: EtaClock, fake: FakeClock, costs: list[float], total: int) -> list:
    """Each step costs its seconds (what happens between steps included); the ETA after each."""
    etas = []
    for i, cost in enumerate(costs):
        fake.t += cost
        etas.append(clock.tick(total - i - 1))
    return etas


def test_the_first_step_is_not_extrapolated_and_there_is_no_estimate_until_a_few_steps_ran():
    fake = FakeClock()
    # a 300-step edit: the first step compiles (30 s), every later one costs 0.5 s
    etas = _run(EtaClock(settle=3, now=fake), fake, [30.0] + [0.5] * 9, total=300)
    assert etas[:3] == [None, None, None]
    assert etas[3] == pytest.approx(0.5 * 296)  # not 30 s per step (the first step) or 7.8 s (its share)
    assert etas[-1] == pytest.approx(0.5 * 290)


def test_a_pause_is_not_a_step_cost_and_the_estimate_follows_a_growing_cost():
    fake = FakeClock()
    clock = EtaClock(settle=2, window=4, now=fake)
    etas = _run(clock, fake, [9.0, 1.0, 1.0, 120.0, 1.0], total=20)  # a 2-minute pause before the 4th step
    assert etas[-1] == pytest.approx(1.0 * 15)
    etas = _run(clock, fake, [3.0, 3.0, 3.0, 3.0], total=8)
    assert etas[-1] == pytest.approx(3.0 * 4)  # the last `window` steps, not the cheap early ones
    assert _run(clock, fake, [3.0], total=1) == [0.0]
    with pytest.raises(ValueError):
        EtaClock(settle=0)
