"""A closed-form prior that "knows" a reference scene: its target for each view is the scene's render.

Neither text-to-3D nor a text-prompted edit has a ground truth, so a prior that wants a *known* 3D result is
how both are proven offline: `ReferencePrior` is the closed-form prior (closed_form.py) in its per-view target
mode, where the target of each view is the render of a reference scene from that very camera. Generation from
a sphere, or an edit of a part, must then move the Gaussians until their renders match the reference's, which
tests and the benches measure. The same class serves both loops:

- `reference:PATH` (the `--model` spec, any readable scene format) loads PATH as the reference (loading.py);
- the edit demo `closed-form:<colour>` becomes "the part, recoloured": `recolour_part` builds the scene whose
  masked Gaussians have that colour (their shading kept) and nothing else changed, and the edit loop wraps the
  prior around it, so the ideal edit is a clean recolour of the part, not a frame flooded with one colour.

Drawing the reference needs the renderer, which guidance/ never imports (losses take images, not scenes). So
the prior is handed a render function (`RenderFn`, engine/render/images.py's `rgb_renderer`): by whoever
constructs it, or, for one the loader built without one, by the loop that runs it (`with_renderer`; the edit
and generate loops do it with their config's render backend). The loader cannot: it sits inside guidance/.

Both loops tell a view-aware model which cameras the coming images are rendered from by calling
`set_views(cameras)` (see `ViewAwareModel`) before every loss; everything else is the `DiffusionModel`
protocol, delegated to a `ClosedFormPrior` rebuilt around the new targets.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene, rgb_to_sh0, sh0_to_rgb
from .base import Condition
from .closed_form import ClosedFormPrior

RenderFn = Callable[[GaussianScene, Cameras, tuple[float, float, float]], Tensor]
"""(scene, cameras [C], background RGB) -> images [C, H, W, 3] (engine/render/images.py's `rgb_renderer`)."""


@runtime_checkable
class ViewAwareModel(Protocol):
    """A guidance model that needs the cameras of the images it is about to score."""

    def set_views(self, cameras: Cameras) -> None: ...


class ReferencePrior:
    """`DiffusionModel` whose every prompt is centred, per view, on the render of `reference` (white background
    by default, like generation's renders). Call `set_views(cameras)` before scoring images of those cameras.

    `render_fn` draws the reference; None until someone hands one over (`with_renderer`)."""

    latent_scale = 1
    latent_channels = 3
    prediction_type = "epsilon"

    def __init__(
        self,
        reference: GaussianScene,
        *,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        data_std: float = 0.05,
        render_fn: RenderFn | None = None,
        name: str = "closed-form:reference-object",
    ) -> None:
        self.reference = reference.detach()
        self.background = tuple(float(c) for c in background)
        self.render_fn = render_fn
        self._prior = ClosedFormPrior(tuple(self.background), data_std=data_std, name="closed-form:reference")
        self.name = name
        self.device = self._prior.device
        self.dtype = self._prior.dtype
        self.alphas_cumprod = self._prior.alphas_cumprod
        self.num_train_timesteps = self._prior.num_train_timesteps

    def target_images(self, cameras: Cameras) -> Tensor:
        """[C, H, W, 3] renders of the reference from `cameras` (what generation should reproduce)."""
        if self.render_fn is None:
            raise RuntimeError(f"{self.name} has no render function to draw its reference: build it with "
                               "render_fn=engine.render.images.rgb_renderer() or call with_renderer(...) first")
        with torch.no_grad():
            rgb = self.render_fn(self.reference, cameras, self.background)
        return rgb.clamp(0.0, 1.0)  # images in [0, 1], as the edit loop clamps its renders

    def set_views(self, cameras: Cameras) -> None:
        self._prior = self._prior.with_target(self.target_images(cameras))

    def set_background(self, background: tuple[float, float, float]) -> None:
        """Targets from now on are rendered over this background (the caller renders over the same one)."""
        self.background = tuple(float(c) for c in background)

    def with_background(self, background: tuple[float, float, float]) -> "ReferencePrior":
        """The same reference rendered over another background (the caller's renders must use the same one)."""
        if tuple(float(c) for c in background) == self.background:
            return self
        return ReferencePrior(self.reference, background=background, data_std=self._prior.data_std,
                              render_fn=self.render_fn, name=self.name)

    def with_renderer(self, render_fn: RenderFn) -> "ReferencePrior":
        """This prior, drawing its reference with `render_fn` unless it already has a render function (the
        caller's own prior object is never changed)."""
        if self.render_fn is not None:
            return self
        return ReferencePrior(self.reference, background=self.background, data_std=self._prior.data_std,
                              render_fn=render_fn, name=self.name)

    # --- the DiffusionModel protocol, delegated ---------------------------------------------------------
    def encode_images(self, images: Tensor) -> Tensor:
        return self._prior.encode_images(images)

    def decode_latents(self, latents: Tensor) -> Tensor:
        return self._prior.decode_latents(latents)

    def condition(self, prompt: str, *, original: Tensor | None = None) -> Condition:
        return self._prior.condition(prompt, original=original)

    def predict_noise(self, latents_t: Tensor, t: Tensor, cond: Condition, *, guidance_scale: float = 1.0,
                      uncond: Condition | None = None) -> Tensor:
        return self._prior.predict_noise(latents_t, t, cond, guidance_scale=guidance_scale, uncond=uncond)


def recolour_part(scene: GaussianScene, selected: Tensor, colour) -> GaussianScene:
    """`scene` with the selected Gaussians' base colour replaced by `colour` (RGB in [0, 1]), keeping their
    baked shading: each Gaussian keeps its luminance relative to the part's mean luminance. Everything else,
    geometry and view-dependent terms included, is unchanged."""
    selected = torch.as_tensor(selected, dtype=torch.bool, device=scene.device)
    rgb = sh0_to_rgb(scene.sh0.detach()[selected, 0])  # [M, 3]
    if rgb.shape[0] == 0:
        return scene
    lum = rgb @ torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    shade = (lum / lum.mean().clamp_min(1e-6)).clamp(0.4, 1.4)[:, None]
    new = (torch.as_tensor(colour, dtype=rgb.dtype, device=rgb.device) * shade).clamp(0.0, 1.0)
    sh0 = scene.sh0.detach().clone()
    sh0[selected, 0] = rgb_to_sh0(new)
    return scene.detach().replace(sh0=sh0)

