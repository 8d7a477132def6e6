"""What the edit and generate loops share: the per-group Adam, densification, and the orbit of cameras.

- adam.py      `make_optimizer`, the position-rate decay, `adopt_rows` (the optimizer after a refinement)
- densify.py   `DensifyConfig`, `MaskedDensifier` (clone / split / prune), `accumulate_gradients`
- orbit.py     `Orbit`: random and ring cameras framing a set of points (plain numbers, no job config)
- progress.py  `Progress`: the record both loops report after every step; `EtaClock`: its seconds left

Nothing here imports a job (engine.edit, engine.generate): both import this.
"""

from .adam import adopt_rows, make_optimizer, position_rate, remap_adam_state, set_position_rate
from .densify import DensifyConfig, MaskedDensifier, Refinement, accumulate_gradients
from .orbit import Orbit
from .progress import EtaClock, Progress

__all__ = [
    "DensifyConfig", "EtaClock", "MaskedDensifier", "Orbit", "Progress", "Refinement", "accumulate_gradients", "adopt_rows",
    "make_optimizer", "position_rate", "remap_adam_state", "set_position_rate",
]
