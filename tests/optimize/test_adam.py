"""The loops' Adam: one named group per parameter, and the one position-rate decay both jobs use."""

import math

import pytest
import torch

from engine.edit import EditConfig, check_edit_inputs
from engine.generate import GenerateConfig, check_generate_config
from engine.optimize.adam import check_final_fraction, make_optimizer, position_rate, set_position_rate
from engine.scene import PARAM_NAMES
from tests.edit.scenes import two_part_scene


def test_make_optimizer_one_named_group_per_parameter():
    params = {n: torch.zeros(2, requires_grad=True) for n in PARAM_NAMES}
    lrs = {n: 0.1 * (i + 1) for i, n in enumerate(PARAM_NAMES)}
    opt = make_optimizer(params, lrs)
    assert [g["name"] for g in opt.param_groups] == list(PARAM_NAMES)
    for g in opt.param_groups:
        assert g["lr"] == lrs[g["name"]] and g["params"][0] is params[g["name"]]


def test_position_rate_falls_exponentially_from_base_to_the_final_fraction():
    rates = [position_rate(0.2, 0.01, step, 11) for step in range(11)]
    assert rates[0] == 0.2 and math.isclose(rates[-1], 0.2 * 0.01)
    assert math.isclose(rates[5], 0.2 * 0.1)  # halfway: the geometric mean of the ends
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert all(math.isclose(r, 0.01 ** 0.1) for r in ratios)  # one constant factor per step
    assert [position_rate(0.2, 1.0, s, 11) for s in (0, 10)] == [0.2, 0.2]  # a fraction of 1: constant
    assert position_rate(0.2, 0.01, 0, 1) == 0.2  # a one-step job does not divide by zero


def test_set_position_rate_moves_only_the_positions_group():
    params = {n: torch.zeros(2, requires_grad=True) for n in PARAM_NAMES}
    opt = make_optimizer(params, {n: 1.0 for n in PARAM_NAMES})
    set_position_rate(opt, 0.5, 0.1, 9, 10)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {n: (0.05 if n == "means" else 1.0)
                                                              for n in PARAM_NAMES}
    assert math.isclose(opt.param_groups[0]["lr"], 0.05)


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5, float("nan"), True])
def test_a_final_fraction_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match=r"means_final_fraction must be in \(0, 1\]"):
        check_final_fraction(value)


def test_both_jobs_name_and_check_the_decay_the_same_way():
    """One name (`lr.means_final_fraction`) and one check for the edit's and the generation's decay."""
    edit, generate = EditConfig(prompt="x"), GenerateConfig(prompt="x")
    assert 0 < edit.lr.means_final_fraction < 1 and 0 < generate.lr.means_final_fraction < 1
    edit.lr.means_final_fraction = generate.lr.means_final_fraction = 0.0
    scene, part_ids, _ = two_part_scene(10)
    with pytest.raises(ValueError, match=r"lr.means_final_fraction must be in \(0, 1\]"):
        check_edit_inputs(scene, (part_ids == 0).float(), edit)
    with pytest.raises(ValueError, match=r"lr.means_final_fraction must be in \(0, 1\]"):
        check_generate_config(generate)
