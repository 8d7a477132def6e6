"""Text-prompted editing of the part of a scene a per-Gaussian mask selects. Read loop.py first.

- config.py         `EditConfig`, `LearningRates`, `check_edit_inputs`, `as_mask`: what defines a job, and the
                    checks that refuse a bad one before any work
- region.py         `EditRegion`, `Box`, `plan_region`, `seed_boxes`: the part of space an edit may change
- views.py          `part_orbit`, `ViewPicker`: cameras around the part that actually see it
- view_pool.py      `ViewPool`: the pass's fixed views and what each keeps (mask, frozen rows drawn once)
- params.py         `MaskedParams` and the step rules (confine, gate, inside, drop faint)
- prior_removal.py  `PriorRemoval`, `remove_prior` (`remove_prior_rows`: with its row map): forget the part's
                    old colour first, keeping its view-dependent lighting (RoMaP)
- shape_gate.py     `ShapeGate`: when geometry may move (`edit`: auto measures whether colour explains the edit)
- colour_carry.py   `carry_colour`: a colour-only edit's change carried to its poorly observed Gaussians
- loop.py           `iter_edit` (a generator of progress records) and `run_edit` (the same with a callback)
"""

from .config import (
    EDIT_KINDS,
    MAX_RESOLUTION,
    MAX_STEPS,
    METHODS,
    MIN_RESOLUTION,
    EditConfig,
    LearningRates,
    as_mask,
    check_edit_inputs,
)
from .loop import EditResult, build_loss, edit_prior, iter_edit, run_edit
from .prior_removal import PriorRemoval, remove_prior, remove_prior_rows
from .region import Box, EditRegion, plan_region
from .views import ViewPicker, part_orbit

__all__ = [
    "EDIT_KINDS", "MAX_RESOLUTION", "MAX_STEPS", "METHODS", "MIN_RESOLUTION", "Box", "EditConfig",
    "EditRegion", "EditResult", "LearningRates", "PriorRemoval", "ViewPicker", "as_mask", "build_loss",
    "check_edit_inputs", "edit_prior", "iter_edit", "part_orbit", "plan_region", "remove_prior", "remove_prior_rows",
    "run_edit",
]
