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

from collections import OrderedDict
from functools import cached_property

import torch
from torch import Tensor

from ..camera import Cameras
from ..render import _finish, render
from ..render.cpu import draws_compiled
from ..render.culling import frozen_and_trainable
from ..render.frozen_view import FrozenView, render_over_frozen, tiles_under
from ..render.types import RenderOutput
from ..scene import GaussianScene
from .region import EditRegion
from .views import ViewPicker


def frozen_views_serve(scene: GaussianScene, backend: str) -> bool:
    """Whether steps draw over cached frozen views (the CPU renderer); a GPU renderer culls by itself."""
    return draws_compiled(scene, backend)


def camera_key(cameras: Cameras, c: int) -> tuple:
    """A hashable identity of camera c (its matrices' bytes and its size)."""
    return (cameras.viewmats[c].detach().cpu().double().numpy().tobytes(),
            cameras.Ks[c].detach().cpu().double().numpy().tobytes(), int(cameras.width), int(cameras.height))


class LRU(OrderedDict):
    """A dict that keeps its `capacity` most recently used entries (`get` counts as a use)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = int(capacity)

    def get(self, key, make):
        """The entry for `key`, made by `make()` when missing (the least recently used goes when full)."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


class PlainRenders:
    """`render_fn(scene, cameras, background) -> rgb [C, H, W, 3]` (engine/render/images.py's shape) that draws
    each (scene, camera) once, without background, and composites the asked background as the renderer does:
    for scenes that do not change during an edit (the original, a reference prior's target)."""

    def __init__(self, backend: str, capacity: int = 80) -> None:
        self.backend = backend
        self._images = LRU(capacity)  # (scene id, camera) -> (rgb [H,W,3], alpha [H,W,1])
        self._scenes: dict[int, GaussianScene] = {}  # keeps every keyed scene alive (its id stays its own)

    def __call__(self, scene: GaussianScene, cameras: Cameras, background) -> Tensor:
        self._scenes[id(scene)] = scene
        rgb, alpha = [], []
        for c in range(len(cameras)):
            image, a = self._images.get((id(scene), camera_key(cameras, c)),
                                        lambda c=c: self._draw(scene, cameras[c : c + 1]))
            rgb.append(image)
            alpha.append(a)
        return _finish(torch.stack(rgb), torch.stack(alpha), torch.zeros_like(torch.stack(alpha)), background, {}).rgb

    @torch.no_grad()
    def _draw(self, scene: GaussianScene, camera: Cameras) -> tuple[Tensor, Tensor]:
        out = render(scene, camera, background=None, backend=self.backend)
        return out.rgb[0], out.alpha[0]


class ViewPool:
    """`size` views of the part drawn from the orbit (visibility-checked when drawn), and per view its region
    mask and, on the CPU, its frozen rows drawn once (see the module docstring). `refresh` replaces the
    oldest view by a fresh one, so a long edit still sees many views.

    The frozen rows are `frozen_rows` [N] bool of `scene` (the edit's MaskedParams.base), read in place.

    Memory: the caches keep the views in use (LRU, `size + spare` entries); on the CPU the pool holds at most
    `budget_mb` of frozen views: the first view's size decides how many views the pool keeps (at least
    `min_size`), so a big scene gets fewer, a small one all it asked for."""

    def __init__(self, picker: ViewPicker, size: int, generator: torch.Generator, region: EditRegion,
                 scene: GaussianScene, frozen_rows: Tensor, backend: str, device, *, budget_mb: float = 512.0,
                 min_size: int = 8, spare: int = 16) -> None:
        self.picker, self.region, self.backend, self.device = picker, region, backend, device
        self.scene, self.frozen_rows = scene, frozen_rows
        self.cameras = picker.sample(int(size), generator)
        self.sh_degree = scene.sh_degree
        self.cached = frozen_views_serve(scene, backend)
        self._masks = LRU(len(self.cameras) + spare)
        self._views = LRU(len(self.cameras) + spare)
        self._oldest = 0
        if self.cached and len(self.cameras) > min_size:
            per_view = max(self.frozen_view(self.cameras, 0).nbytes, 1)
            keep = max(min_size, min(len(self.cameras), int(budget_mb * 2**20 // per_view)))
            self.cameras = self.cameras[:keep]
            self._views.capacity = keep + min(spare, max(1, keep // 4))

    def __len__(self) -> int:
        return len(self.cameras)

    def draw(self, num: int, generator: torch.Generator, *, distinct: bool = False) -> Tensor:  # [num] int64
        """Pool indices for a step (with replacement), or `distinct` ones (as many as the pool has)."""
        if distinct:
            return torch.randperm(len(self), generator=generator)[: min(num, len(self))]
        return torch.randint(len(self), (num,), generator=generator)

    def refresh(self, generator: torch.Generator) -> None:
        """Replace the oldest view by a freshly drawn one (its caches go as the LRU needs room)."""
        fresh = self.picker.sample(1, generator)
        i = self._oldest
        self.cameras = Cameras(self.cameras.viewmats.index_copy(0, torch.tensor([i]), fresh.viewmats),
                               self.cameras.Ks.index_copy(0, torch.tensor([i]), fresh.Ks),
                               self.cameras.width, self.cameras.height)
        self._oldest = (i + 1) % len(self)

    def masks(self, cameras: Cameras) -> Tensor:  # [C, H, W, 1]
        """The region's 2D mask in each camera, projected once per camera."""
        return torch.stack([self._masks.get(camera_key(cameras, c), lambda c=c: self.region.project(
            cameras[c : c + 1], device=self.device, backend=self.backend)[0]) for c in range(len(cameras))])

    def render(self, params: dict[str, Tensor], cameras: Cameras, background) -> tuple[RenderOutput, int]:
        """(render of frozen + the trainable rows `params`, F): F leading rows of meta's means2d / radii are
        frozen ones (0 on the cached path, whose meta holds the trainable rows only)."""
        bg = tuple(background)
        if not self.cached:
            scene, num_frozen = frozen_and_trainable(self.frozen, params, cameras)
            return render(scene, cameras.to(scene.device, scene.dtype), background=bg, backend=self.backend), num_frozen
        views = [self.frozen_view(cameras, c) for c in range(len(cameras))]
        return render_over_frozen(views, params, bg), 0

    @cached_property
    def frozen(self) -> GaussianScene:
        """The frozen rows as a scene of their own, for the renderer that draws them with the part every step
        (a GPU's); the CPU's cached views read them from `scene` in place."""
        return self.scene.subset(self.frozen_rows)

    def frozen_view(self, cameras: Cameras, c: int) -> FrozenView:
        return self._views.get(camera_key(cameras, c), lambda: self._frozen_view(cameras[c : c + 1]))

    def _frozen_view(self, camera: Cameras) -> FrozenView:
        camera = camera.to(self.scene.device, self.scene.dtype)
        reach = tiles_under(self.masks(camera)[0, ..., 0].cpu())  # where the part, kept in its region, can be
        return FrozenView(self.scene, camera, self.sh_degree, allowed=reach, rows=self.frozen_rows)

    @property
    def nbytes(self) -> int:
        """Memory the per-view caches hold now."""
        masks = sum(m.numel() * m.element_size() for m in self._masks.values())
        return int(masks + sum(v.nbytes for v in self._views.values()))
