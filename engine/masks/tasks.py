"""The editor's long mask tasks as plain functions: a SAM click lifted to 3D, a part selected by its name.

The editor only says what to do: it gathers the inputs from a session, binds them with `functools.partial`
and hands the result to the engine worker, which calls it on the engine thread (the thread that owns the
device) with the worker's hooks appended:
- `progress(step, total, message)` reports how far the task is; under the worker it raises TaskCancelled once
  the task is cancelled, which ends the task quietly (the only way a task ends as "cancelled");
- `should_stop()` says whether the task was cancelled, for work that reports no progress for a while;
- `model`, for the tasks that read the editing model, the loaded guidance model.
Each returns the lifted soft weights [N] (float32, CPU): the editor combines them with its selection and cuts
them at its threshold slider.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from .attention import NO_ATTENTION, Stopped, TextMaskConfig, select_by_text
from .galp import galp
from .lift_vote import vote
from .multiview import MultiViewConfig, segment_click
from .sam import SamLoader

Progress = Callable[[int, int, str], None]  # progress(step, total, message)
StopCheck = Callable[[], bool]


def lift_sam_click(
    scene: GaussianScene,
    camera: Cameras,  # the clicked view (one camera)
    pixel: tuple[float, float],  # (x, y) of the click in that view
    sam: SamLoader,
    progress: Progress,
    should_stop: StopCheck,  # unused: `progress` is called after every view, and stops the task there
    *,
    method: str = "vote",  # "galp": 3D-GALP; anything else: visibility-weighted voting
    num_views: int = 12,  # orbit views around the clicked point
    up: tuple[float, float, float] = (0.0, 0.0, 1.0),  # the scene's up, which the orbit views keep upright
) -> Tensor:
    """SAM on the clicked view and on orbit views around the clicked point (engine/masks/multiview.py), lifted
    to soft per-Gaussian weights [N]. Raises pick.NothingHit when the click lands on empty space."""
    total = num_views + 2  # the clicked view, its orbit views, lifting
    if not sam.loaded:
        progress(0, total, "loading SAM")
    segmenter = sam.get()
    progress(0, total, "SAM on the clicked view")
    config = MultiViewConfig(num_views=num_views, up=tuple(up))
    found = segment_click(scene, segmenter, camera, pixel[0], pixel[1], config,
                          on_view=lambda done, n: progress(done, n + 1, f"SAM: {done} of {n} views segmented"))
    n = 1 + len(found.kept)
    use_galp = method == "galp"
    progress(n, n + 1, f"lifting {n} views to 3D ({'3D-GALP' if use_galp else 'voting'})")
    lifted = galp(scene, found.views) if use_galp else vote(scene, found.views)
    return lifted.weights[0].float().cpu()


def text_selection_refusal(model_spec: str) -> str | None:
    """Why the model `model_spec` names cannot select by text (a closed-form or reference prior has no
    cross-attention to read), or None when it can: checked before a text selection is queued."""
    from ..guidance import parse_model_spec

    return NO_ATTENTION if parse_model_spec(model_spec).is_closed_form else None


def lift_text_selection(
    scene: GaussianScene,
    part: str,  # the part's words, e.g. "scarf"
    progress: Progress,
    should_stop: StopCheck,
    model,  # the loaded guidance model (a diffusers model: its UNet's cross-attention is read)
    *,
    prompt: str = "",  # the prompt the model reads (must contain `part`); empty: "a photo of a <part>"
    region: Tensor | None = None,  # [N] a rough region to frame the views on (weights > 0.5), or None
    num_views: int = 8,
    up: tuple[float, float, float] = (0.0, 0.0, 1.0),
    sam: SamLoader | None = None,  # refine each view's attention mask with SAM, or None
) -> Tensor:
    """The part named `part` from the model's cross-attention to its words in many views, lifted with 3D-GALP
    (engine/masks/attention.py): soft per-Gaussian weights [N]."""
    segmenter = None
    if sam is not None:
        progress(0, 1, "loading SAM")
        segmenter = sam.get()
    config = TextMaskConfig(num_views=num_views, up=tuple(up))
    progress(0, 1, f"rendering {config.num_views} views")
    try:
        result = select_by_text(scene, model, part, prompt=prompt or None, config=config, region=region,
                                segmenter=segmenter, should_stop=should_stop, on_progress=progress)
    except Stopped:
        # should_stop() said the task is cancelled: under the worker this report raises TaskCancelled, which
        # ends the task as cancelled rather than failed.
        progress(0, 1, "cancelled")
        raise
    return result.weights.float().cpu()
