"""The views one edit pass looks from, and what it keeps per view so that a step costs what its part costs.

Real editors distil from a fixed set of cameras; so does this one now: `ViewPool` draws `size` orbit views
once (ViewPicker's visibility redraws, once, instead of two whole-scene renders per candidate per step) and
every step picks among them. Per view it keeps, built on first use and never changed during the pass (the
frozen rows never change):
- the region's 2D mask (region.py's projection);
- on the CPU renderer, the frozen rows drawn once (engine/render/frozen_view.py): a step projects, shades and
  composites the part's rows and the tiles they touch only, and the picture is the full render's bit for bit;
- renders of fixed scenes (the original for DDS-like losses, a reference prior's target), without background,
  so a step's background is composited exactly as the renderer does it.
Memory is bounded by the pool: one FrozenView per view (its rows cut where tiles saturate) and a few images.
On a GPU backend the renderer culls by itself: the step renders frozen + part there as before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..camera import Cameras
from ..render import _finish, render
from ..render.culling import frozen_and_trainable
from ..render.frozen_view import FrozenView, render_over_frozen, tiles_under
from ..render.types import RenderOutput
from ..scene import GaussianScene
from .region import EditRegion
from .views import ViewPicker


def camera_key(cameras: Cameras, c: int) -> tuple:
    """A hashable identity of camera c (its matrices' bytes and its size)."""
    return (cameras.viewmats[c].detach().cpu().double().numpy().tobytes(),
            cameras.Ks[c].detach().cpu().double().numpy().tobytes(), int(cameras.width), int(cameras.height))


class PlainRenders:
    """`render_fn(scene, cameras, background) -> rgb [C, H, W, 3]` (engine/render/images.py's shape) that draws
    each (scene, camera) once, without background, and composites the asked background as the renderer does:
    for scenes that do not change during an edit (the original, a reference prior's target)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._images: dict[tuple, tuple[Tensor, Tensor]] = {}  # (scene id, camera) -> (rgb [H,W,3], alpha [H,W,1])
        self._scenes: dict[int, GaussianScene] = {}  # keeps every keyed scene alive (its id stays its own)

    def __call__(self, scene: GaussianScene, cameras: Cameras, background) -> Tensor:
        self._scenes[id(scene)] = scene
        rgb, alpha = [], []
        for c in range(len(cameras)):
            key = (id(scene), camera_key(cameras, c))
            if key not in self._images:
                with torch.no_grad():
                    out = render(scene, cameras[c : c + 1], background=None, backend=self.backend)
                self._images[key] = (out.rgb[0], out.alpha[0])
            rgb.append(self._images[key][0])
            alpha.append(self._images[key][1])
        return _finish(torch.stack(rgb), torch.stack(alpha), torch.zeros_like(torch.stack(alpha)), background, {}).rgb


class ViewPool:
    """`size` views of the part drawn once from the orbit (visibility-checked once), and per view its region
    mask and, on the CPU, its frozen rows drawn once (see the module docstring)."""

    def __init__(self, picker: ViewPicker, size: int, generator: torch.Generator, region: EditRegion,
                 frozen: GaussianScene, backend: str, device) -> None:
        self.cameras = picker.sample(int(size), generator)
        self.region, self.frozen, self.backend, self.device = region, frozen, backend, device
        self.sh_degree = frozen.sh_degree
        self.cached = frozen.device.type == "cpu" and backend in ("auto", "torch") \
            and frozen.dtype in (torch.float32, torch.float64)
        self._masks: dict[tuple, Tensor] = {}
        self._views: dict[tuple, FrozenView] = {}

    def __len__(self) -> int:
        return len(self.cameras)

    def draw(self, num: int, generator: torch.Generator, *, distinct: bool = False) -> Tensor:  # [num] int64
        """Pool indices for a step (with replacement), or `distinct` ones (as many as the pool has)."""
        if distinct:
            return torch.randperm(len(self), generator=generator)[: min(num, len(self))]
        return torch.randint(len(self), (num,), generator=generator)

    def masks(self, cameras: Cameras) -> Tensor:  # [C, H, W, 1]
        """The region's 2D mask in each camera, projected once per camera."""
        out = []
        for c in range(len(cameras)):
            key = camera_key(cameras, c)
            if key not in self._masks:
                self._masks[key] = self.region.project(cameras[c : c + 1], device=self.device,
                                                       backend=self.backend)[0]
            out.append(self._masks[key])
        return torch.stack(out)

    def render(self, params: dict[str, Tensor], cameras: Cameras, background) -> tuple[RenderOutput, int]:
        """(render of frozen + the trainable rows `params`, F): F leading rows of meta's means2d / radii are
        frozen ones (0 on the cached path, whose meta holds the trainable rows only)."""
        bg = tuple(background)
        if not self.cached:
            scene, num_frozen = frozen_and_trainable(self.frozen, params, cameras)
            return render(scene, cameras.to(scene.device, scene.dtype), background=bg, backend=self.backend), num_frozen
        views = [self.frozen_view(cameras, c) for c in range(len(cameras))]
        return render_over_frozen(views, params, bg), 0

    def frozen_view(self, cameras: Cameras, c: int) -> FrozenView:
        key = camera_key(cameras, c)
        if key not in self._views:
            camera = cameras[c : c + 1].to(self.frozen.device, self.frozen.dtype)
            reach = tiles_under(self.masks(camera)[0, ..., 0].cpu())  # where the part, kept in its region, can be
            self._views[key] = FrozenView(self.frozen, camera, self.sh_degree, allowed=reach)
        return self._views[key]

    @property
    def nbytes(self) -> int:
        """Memory the per-view caches hold now."""
        masks = sum(m.numel() * m.element_size() for m in self._masks.values())
        return int(masks + sum(v.nbytes for v in self._views.values()))
