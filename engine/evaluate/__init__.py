"""Measuring an edit: one place for every metric, used by `python -m engine evaluate`, the batch and the benches.

Read in this order:

- metrics.py       the measurements: `psnr` (identical -> 100 dB cap, empty region -> None), `spill_vs_input`,
                   `spill_vs_target`, `count_floaters`, `frozen_rows_changed`
- views.py         the one held-out ring of evaluation views around the part, and the renders taken on it
- report.py        `edit_metrics`: the batch's and `evaluate`'s numbers, against the input (+ a target, + CLIP)
- ground_truth.py  `edit_quality`: against a known ideal result (bench/edit_quality.py)
- clip.py          CLIP score and CLIP direction (`load_clip`: hub id or local folder); imported on its own
"""

from .ground_truth import EditQuality, edit_quality
from .metrics import (
    PSNR_CAP,
    count_floaters,
    frozen_rows_changed,
    psnr,
    spill_vs_input,
    spill_vs_target,
)
from .report import EvalOptions, edit_metrics
from .views import held_out_cameras, part_cameras

__all__ = [
    "PSNR_CAP",
    "EditQuality",
    "EvalOptions",
    "count_floaters",
    "edit_metrics",
    "edit_quality",
    "frozen_rows_changed",
    "held_out_cameras",
    "part_cameras",
    "psnr",
    "spill_vs_input",
    "spill_vs_target",
]
