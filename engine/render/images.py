"""Renders as pictures: the one float -> uint8 conversion, one picture of a scene from a camera, and a render
function for priors that need one.

`to_uint8` rounds half up (floor(x * 255 + 0.5)): the rule the edit/generate previews, the editor's viewer and
`python -m engine render` always used, so their images are unchanged; the multi-view SAM renders, which rounded
half to even, now use it too (the two differ only where x * 255 lands on a tie, a few pixels in a million).

`rgb_renderer(backend)` is how a scene-aware prior (engine/guidance/reference.py) is told how to draw: guidance/
never imports the renderer, so whoever builds or runs such a prior hands it this function (the shape of
engine.guidance.reference.RenderFn).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene


def to_uint8(image: Tensor) -> np.ndarray:  # [..., 3] in [0, 1] -> [..., 3] uint8 (numpy, on the CPU)
    """Clamp to [0, 1] and round half up to 0..255."""
    return (image.detach().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def picture(scene: GaussianScene, cameras: Cameras, *, background=(1.0, 1.0, 1.0),
            colors: Tensor | None = None) -> np.ndarray:  # colors: [N, 3] or None
    """`scene` seen from the first of `cameras` as a uint8 image [H, W, 3] (what a screen shows: the editor's
    views, a job's previews from the session's view)."""
    from . import render

    return to_uint8(render(scene.detach(), cameras[0:1], colors=colors, background=background).rgb[0])


def rgb_renderer(backend: str = "auto") -> Callable[[GaussianScene, Cameras, tuple[float, float, float]], Tensor]:
    """(scene, cameras [C], background RGB) -> images [C, H, W, 3] (not clamped), drawn with `backend`."""
    from . import render

    def render_rgb(scene: GaussianScene, cameras: Cameras, background: tuple[float, float, float]) -> Tensor:
        return render(scene, cameras, background=background, backend=backend).rgb

    return render_rgb
