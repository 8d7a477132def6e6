"""How close an edit came to its known ideal result, on views the edit never saw (bench/edit_quality.py).

Given the input scene, the selection, the edited result and the ground-truth target scene, on held-out cameras
(views.held_out_cameras):

- **part region** of a view: the union of where the selected part is visible in the input and where the
  target's changed part is visible in the target (occlusion included), i.e. every pixel the edit was meant to
  change; **PSNR inside** and **PSNR outside** that region against the target's render (None when the region,
  or the rest, is empty in every view);
- **spill vs the target** and **floaters** as metrics.py defines them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from .metrics import count_floaters, psnr, spill_vs_target
from .views import render_views, seen


@dataclass
class EditQuality:
    psnr_inside: float | None  # dB against the target inside the part region; None: the region is empty
    psnr_outside: float | None  # dB against the target elsewhere; None: the part fills every view
    spill_vs_target: float  # share of the outside pixels off the target by more than 2/255
    floaters: int
    gaussians_before: int
    gaussians_after: int

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def edit_quality(
    source: GaussianScene,
    selected: Tensor,  # [N_source] bool: the part the edit was given
    result: GaussianScene,
    result_edited: Tensor,  # [N_result] bool: rows the edit optimized or created
    target: GaussianScene,
    target_changed: Tensor,  # [N_target] bool: the target's rows that make up the edited part
    region,  # EditRegion the edit was confined to (engine.edit.plan_region)
    cameras: Cameras,
    *,
    background=(1.0, 1.0, 1.0),
    backend: str = "auto",
) -> EditQuality:
    """The metrics of the module docstring on `cameras`."""
    got = render_views(result, cameras, background, backend=backend)
    want = render_views(target, cameras, background, backend=backend)
    part = seen(source, selected, cameras, backend=backend)
    if bool(target_changed.any()):
        part |= seen(target, target_changed, cameras, backend=backend)
    return EditQuality(
        psnr_inside=psnr(got, want, part[..., None]),
        psnr_outside=psnr(got, want, ~part[..., None]),
        spill_vs_target=spill_vs_target(got, want, part),
        floaters=count_floaters(result, result_edited, region),
        gaussians_before=len(source),
        gaussians_after=len(result),
    )
