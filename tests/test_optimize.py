import numpy as np
import torch

from engine.optimize import make_optimizer, to_uint8
from engine.scene import PARAM_NAMES


def test_make_optimizer_one_named_group_per_parameter():
    params = {n: torch.zeros(2, requires_grad=True) for n in PARAM_NAMES}
    lrs = {n: 0.1 * (i + 1) for i, n in enumerate(PARAM_NAMES)}
    opt = make_optimizer(params, lrs)
    assert [g["name"] for g in opt.param_groups] == list(PARAM_NAMES)
    for g in opt.param_groups:
        assert g["lr"] == lrs[g["name"]] and g["params"][0] is params[g["name"]]


def test_to_uint8_rounds_and_clamps():
    image = torch.tensor([[[-0.5, 0.0, 0.5], [1.0, 2.0, 0.999]]])
    out = to_uint8(image)
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 0, 128], [255, 255, 255]]]
