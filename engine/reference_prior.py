"""A closed-form prior that "knows" a reference scene: its target for each view is the scene's render.

Neither text-to-3D nor a text-prompted edit has a ground truth, so a prior that wants a *known* 3D result is
how both are proven offline: `ReferencePrior` is the closed-form prior (engine/guidance/closed_form.py) in its
per-view target mode, where the target of each view is the render of a reference scene from that very camera.
Generation from a sphere, or an edit of a part, must then move the Gaussians until their renders match the
reference's, which tests and the benches measure. The same class serves both loops:

- `reference:PATH` (the `--model` spec, any readable scene format) loads PATH as the reference;
- the edit demo `closed-form:<colour>` becomes "the part, recoloured": `recolour_part` builds the scene whose
  masked Gaussians have that colour (their shading kept) and nothing else changed, and the edit loop wraps the
  prior around it, so the ideal edit is a clean recolour of the part, not a frame flooded with one colour.

Both loops tell a view-aware model which cameras the coming images are rendered from by calling
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
from .scene import GaussianScene, rgb_to_sh0, sh0_to_rgb


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
        name: str = "closed-form:reference-object",
    ) -> None:
        self.reference = reference.detach()
        self.background = tuple(float(c) for c in background)
        self.render_backend = render_backend
        self._prior = ClosedFormPrior(tuple(self.background), data_std=data_std, name="closed-form:reference")
        self.name = name
        self.device = self._prior.device
        self.dtype = self._prior.dtype
        self.alphas_cumprod = self._prior.alphas_cumprod
        self.num_train_timesteps = self._prior.num_train_timesteps

    def target_images(self, cameras: Cameras) -> Tensor:
        """[C, H, W, 3] renders of the reference from `cameras` (what generation should reproduce)."""
        with torch.no_grad():
            rgb = render(self.reference, cameras, background=self.background, backend=self.render_backend).rgb
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
                              render_backend=self.render_backend, name=self.name)

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


def two_blob_reference() -> GaussianScene:
    """A small known object for tests and benchmarks: a red blob and a smaller blue one beside and above it,
    240 opaque Gaussians within 0.4 of the origin."""
    from .generate_init import primitive_scene

    red = primitive_scene("sphere", 120, radius=0.18, center=(-0.2, 0.0, 0.0), opacity=0.9, seed=1)
    blue = primitive_scene("sphere", 120, radius=0.14, center=(0.22, 0.05, 0.12), opacity=0.9, seed=2)
    red = red.replace(sh0=rgb_to_sh0(torch.tensor([0.85, 0.15, 0.1])).expand(len(red), 1, 3).clone())
    blue = blue.replace(sh0=rgb_to_sh0(torch.tensor([0.1, 0.3, 0.9])).expand(len(blue), 1, 3).clone())
    return GaussianScene.concat([red, blue])
