"""The per-group Adam both loops use, its state after densification, and the position-rate decay.

One named param group per scene parameter, so densification can rebuild the optimizer over new rows and carry
each surviving row's moments by name (`adopt_rows`), and a schedule can find the positions' group.

The position rate decays exponentially from its base to `final_fraction` x base by the last step (as 3DGS does):
early steps move Gaussians far, late ones let them settle. The other groups keep their rates.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..scene import PARAM_NAMES


def make_optimizer(params: dict[str, Tensor], lrs: dict[str, float]) -> torch.optim.Optimizer:
    """Adam with one named group per scene parameter (densification remaps state by group name)."""
    groups = [{"params": [params[n]], "lr": lrs[n], "name": n} for n in PARAM_NAMES]
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def check_final_fraction(value: float, name: str = "lr.means_final_fraction") -> None:
    """Refuse a decay target outside (0, 1] (0 would stop the positions dead; above 1 the rate would grow)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                             and 0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def position_rate(base: float, final_fraction: float, step: int, total: int) -> float:
    """The position rate at `step` (0-based) of `total`: `base` at the first step, `base * final_fraction` at
    the last, exponential in between."""
    return base * float(final_fraction) ** (step / max(total - 1, 1))


def set_position_rate(optimizer: torch.optim.Optimizer, base: float, final_fraction: float, step: int,
                      total: int) -> None:
    """Set the "means" group's rate for `step` (call before `optimizer.step()`)."""
    for group in optimizer.param_groups:
        if group["name"] == "means":
            group["lr"] = position_rate(base, final_fraction, step, total)


def remap_adam_state(
    old: torch.optim.Optimizer,
    new: torch.optim.Optimizer,
    old_params: dict[str, Tensor],
    new_params: dict[str, Tensor],
    parent: Tensor,  # [M'] long
    reset_state: Tensor,  # [M'] bool
) -> None:
    """Carry Adam's moments from `old` to `new` row by row (gsplat's rule: zero for new/split rows)."""
    for name, new_p in new_params.items():
        state = old.state.get(old_params[name])
        if not state:
            continue
        moved = {}
        for key, value in state.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == old_params[name].shape[0]:
                gathered = value[parent].clone()
                gathered[reset_state] = 0
                moved[key] = gathered
            else:
                moved[key] = value.clone() if isinstance(value, Tensor) else value
        new.state[new_p] = moved


def adopt_rows(
    optimizer: torch.optim.Optimizer,
    old_params: dict[str, Tensor],
    new_params: dict[str, Tensor],
    parent: Tensor,  # [M'] long: old row of each new row
    reset_state: Tensor,  # [M'] bool: rows whose moments start from zero
    lrs: dict[str, float],
) -> torch.optim.Optimizer:
    """A new optimizer over `new_params` (the rows after a refinement) that carries the surviving rows' Adam
    moments. The rates are `lrs`; a schedule sets the positions' rate again before the next step."""
    new_optimizer = make_optimizer(new_params, lrs)
    remap_adam_state(optimizer, new_optimizer, old_params, new_params, parent, reset_state)
    return new_optimizer
