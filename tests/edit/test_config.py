"""What an EditConfig's defaults mean for the loop it builds."""

import pytest

from engine.edit import EditConfig, build_loss
from engine.guidance.closed_form import ClosedFormPrior

T = 1000  # training timesteps


def _last_step_t_max(config: EditConfig) -> int:
    """The highest timestep the built loss may draw at the last step."""
    return build_loss(config, ClosedFormPrior((0.9, 0.1, 0.1))).timesteps.bounds(config.steps - 1, config.steps, T)[1]


@pytest.mark.parametrize("method, annealed_to", [("sds", 500), ("romap", 500), ("dds", 980)])
def test_t_max_end_none_means_the_methods_default(method, annealed_to):
    """None: the method's default end of t_max's annealing — 0.5 for sds/romap, none (t_max) for dds."""
    config = EditConfig(prompt="x", source_prompt="y", method=method, steps=100, t_max=0.98, t_max_end=None)
    assert _last_step_t_max(config) == annealed_to
    assert build_loss(config, ClosedFormPrior((0.9, 0.1, 0.1))).timesteps.bounds(0, 100, T)[1] == 980


@pytest.mark.parametrize("method", ["sds", "dds", "romap"])
def test_t_max_end_is_obeyed_and_equal_to_t_max_turns_annealing_off(method):
    config = EditConfig(prompt="x", source_prompt="y", method=method, steps=100, t_max=0.9, t_max_end=0.3)
    assert _last_step_t_max(config) == 300
    config.t_max_end = config.t_max
    assert _last_step_t_max(config) == 900
