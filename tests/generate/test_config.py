"""What a GenerateConfig's defaults mean for the loop it builds."""

import pytest

from engine.generate import GenerateConfig, build_loss
from engine.guidance.closed_form import ClosedFormPrior

T = 1000  # training timesteps


def _t_max_at(config: GenerateConfig, step: int) -> int:
    """The highest timestep the built loss may draw at `step`."""
    return build_loss(config, ClosedFormPrior((0.9, 0.1, 0.1))).timesteps.bounds(step, config.steps, T)[1]


@pytest.mark.parametrize("method", ["sds", "ism"])
def test_t_max_end_none_means_the_methods_default(method):
    """None: the method's default end of t_max's annealing, as for an edit — 0.5 for sds and ism (never above
    t_max). It used to mean "no annealing" here; equal to t_max is how to ask for that (below)."""
    config = GenerateConfig(prompt="x", method=method, steps=100, t_max=0.98, t_max_end=None)
    assert (_t_max_at(config, 0), _t_max_at(config, 99)) == (980, 500)
    low = GenerateConfig(prompt="x", method=method, steps=100, t_min=0.02, t_max=0.4, t_max_end=None)
    assert _t_max_at(low, 99) == 400  # never annealed upward


@pytest.mark.parametrize("method", ["sds", "ism"])
def test_the_default_anneals_to_one_half_and_equal_to_t_max_turns_annealing_off(method):
    config = GenerateConfig(prompt="x", method=method, steps=100)
    assert _t_max_at(config, 99) == 500
    config.t_max_end = 0.98  # the default t_max (None until resolved)
    assert _t_max_at(config, 99) == 980
    config.t_max_end = 0.3
    assert _t_max_at(config, 99) == 300
