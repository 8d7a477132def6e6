"""A closed-form prior that "knows" a reference object: its target for each view is the object's render.

Text-to-3D has no ground truth, so a prior that wants a *known* 3D object is how generation is proven offline:
`ReferencePrior` is the closed-form prior (engine/guidance/closed_form.py) in its per-view target mode, where
the target of each view is the render of a reference scene from that very camera. Generation from a sphere
must then move the Gaussians until their renders match the reference's, which tests and the bench measure.

The generation loop tells a view-aware model which cameras the coming images are rendered from by calling
`set_views(cameras)` (see `ViewAwareModel`) before every loss; everything else is the `DiffusionModel`
protocol, delegated to a `ClosedFormPrior` rebuilt around the new targets.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from .camera import Cameras
from .guidance.base import Condition
from .guidance.closed_form import ClosedFormPrior
from .render import render
from .scene import GaussianScene, rgb_to_sh0


@runtime_checkable
class ViewAwareModel(Protocol):
    """A guidance model that needs the cameras of the images it is about to score."""

    def set_views(self, cameras: Cameras) -> None: ...


class ReferencePrior:
    """`DiffusionModel` whose every prompt is centred, per view, on the render of `reference` (white background
    by default, like generation's renders). Call `set_views(cameras)` before scoring images of those cameras."""

    latent_scale = 1
    latent_channels = 3
    prediction_type = "epsilon"

    def __init__(
        self,
        reference: GaussianScene,
        *,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        data_std: float = 0.05,
        render_backend: str = "auto",
    ) -> None:
        self.reference = reference.detach()
        self.background = tuple(float(c) for c in background)
        self.render_backend = render_backend
        self._prior = ClosedFormPrior(tuple(self.background), data_std=data_std, name="closed-form:reference")
        self.name = "closed-form:reference-object"
        self.device = self._prior.device
        self.dtype = self._prior.dtype
        self.alphas_cumprod = self._prior.alphas_cumprod
        self.num_train_timesteps = self._prior.num_train_timesteps

    def target_images(self, cameras: Cameras) -> Tensor:
        """[C, H, W, 3] renders of the reference from `cameras` (what generation should reproduce)."""
        with torch.no_grad():
            return render(self.reference, cameras, background=self.background, backend=self.render_backend).rgb

    def set_views(self, cameras: Cameras) -> None:
        self._prior = self._prior.with_target(self.target_images(cameras))

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


def two_blob_reference() -> GaussianScene:
    """A small known object for tests and benchmarks: a red blob and a smaller blue one beside and above it,
    240 opaque Gaussians within 0.4 of the origin."""
    from .generate_init import primitive_scene

    red = primitive_scene("sphere", 120, radius=0.18, center=(-0.2, 0.0, 0.0), opacity=0.9, seed=1)
    blue = primitive_scene("sphere", 120, radius=0.14, center=(0.22, 0.05, 0.12), opacity=0.9, seed=2)
    red = red.replace(sh0=rgb_to_sh0(torch.tensor([0.85, 0.15, 0.1])).expand(len(red), 1, 3).clone())
    blue = blue.replace(sh0=rgb_to_sh0(torch.tensor([0.1, 0.3, 0.9])).expand(len(blue), 1, 3).clone())
    return GaussianScene.concat([red, blue])
