"""Sparse compositing weights: which Gaussian contributes how much to which pixel, for fixed geometry.

Rendering is linear in the per-Gaussian features: pixel(c, p) = sum_n w[c, p, n] * feature(c, n), where
w = alpha * transmittance is the compositing weight. Every masking question is a question about w:
- a ray pick is the column of Gaussians with a large w at one pixel;
- "visible inside a brush / 2D mask" is sum_p mask(p) * w[c, p, n] (the adjoint, `splat`);
- lifting 2D masks to 3D renders label features many times with the same geometry (`render`).

`compositing_weights` computes the non-zero w of some views once, following the same rule as the dense
reference rasterizer (engine/render/reference.py, gsplat 1.5's `rasterize_to_pixels`): pixel centres at +0.5,
alpha = min(0.999, opacity * exp(-sigma)), skipped when sigma < 0 or alpha < 1/255, front to back by depth, a
pixel stops before the Gaussian that would bring its transmittance to <= 1e-4. Gaussians are visited in depth
order and splatted into the pixels of their opacity-aware radius box (outside it alpha < 1/255 by construction
of the radius, so gsplat's 16x16-tile rule gives the same set), a numba loop that costs O(pairs). tests/masks/test_compositing.py checks `render` against engine.render.render.

Why not re-render through `render()` for each optimisation step: geometry is frozen while masks are lifted, and
a sparse matrix product is ~100x cheaper than a full rasterization on CPU (and needs no CUDA).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, TypeVar

import warnings

import numba
import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras
from ..render.culling import reaching_views
from ..render.projection import ALPHA_THRESHOLD
from ..render.reference import MAX_ALPHA, T_EPS
from ..scene import GaussianScene
from .depth_order import DepthOrder, depth_order, geometry

T = TypeVar("T")


@dataclass
class ViewWeights:
    """Non-zero compositing weights of C views of one size: w = weight[k] of Gaussian gauss[k] at pixel[k].

    Internally the weights form a sparse matrix from the visible (view, Gaussian) pairs to the covered pixels
    (rows and columns that are all zero are left out), which is what `render_pairs` / `splat_rows` use.
    """

    view: Tensor  # [K] int64 view index
    pixel: Tensor  # [K] int64 y * width + x
    gauss: Tensor  # [K] int64 Gaussian index
    weight: Tensor  # [K] float32 alpha * transmittance
    num_views: int
    height: int
    width: int
    num_gaussians: int
    coverage: Tensor | None = None  # [C, H, W] accumulated opacity when the entries leave some Gaussians out
    # (lift_scope.py keeps the part's neighbourhood only; a pixel's opacity still counts what is behind it)

    def __post_init__(self) -> None:
        rows, row_of = _compact(self.view * (self.height * self.width) + self.pixel,
                                self.num_views * self.height * self.width)
        # Pairs are keyed over the Gaussians that appear at all (not C x N keys: a view window of a big scene
        # touches a few of its Gaussians).
        touched, local = _compact(self.gauss, self.num_gaussians)
        pairs, pair_of = _compact(self.view * len(touched) + local, self.num_views * len(touched))
        self.row_index = rows  # [R] flat c * H * W + pixel of each covered pixel
        self.pair_view = torch.div(pairs, max(len(touched), 1), rounding_mode="floor")  # [V] visible pairs
        self.pair_gauss = touched[pairs % max(len(touched), 1)]  # [V]
        # Counting sorts, the transpose first: a Gaussian's pixels come in raster order, so its rows are sorted;
        # sorting those entries (already by pair) by pixel leaves each pixel's pairs sorted too.
        ptr_t, rows_t, w_t = _csr(pair_of.numpy(), row_of.numpy(), self.weight.numpy(), len(pairs))
        pair_t = np.repeat(np.arange(len(pairs), dtype=np.int64), np.diff(ptr_t))
        self._matrix_t = _torch_csr(ptr_t, rows_t, w_t, (len(pairs), len(rows)))  # [V, R]
        self._matrix = _torch_csr(*_csr(rows_t, pair_t, w_t, len(rows)), (len(rows), len(pairs)))  # [R, V]

    @property
    def nnz(self) -> int:
        return int(self.weight.numel())

    # ------------------------------------------------------------------ compact form (covered pixels x pairs)
    def render_pairs(self, pair_features: Tensor) -> Tensor:
        """Features of the visible pairs [V, D] -> composited features of the covered pixels [R, D]."""
        return _SparseMatmul.apply(self._matrix, self._matrix_t, pair_features.to(self.weight.dtype))

    def splat_rows(self, row_values: Tensor) -> Tensor:
        """The adjoint of `render_pairs`: values of the covered pixels [R, D] -> weighted sums per pair [V, D]."""
        return self._matrix_t @ row_values.to(self.weight.dtype).contiguous()

    def rows_of(self, images: Tensor) -> Tensor:
        """Images [C, H, W, D] (or [C, H, W]) -> their covered pixels [R, D]."""
        if images.dim() == 3:
            images = images[..., None]
        if tuple(images.shape[:3]) != (self.num_views, self.height, self.width):
            raise ValueError(
                f"images must be [{self.num_views}, {self.height}, {self.width}, D], got {list(images.shape)}"
            )
        return images.reshape(-1, images.shape[-1])[self.row_index]

    # ------------------------------------------------------------------ image form
    def render(self, features: Tensor) -> Tensor:
        """Composite per-Gaussian features [N, D] or per-view features [C, N, D] -> images [C, H, W, D]
        (no background). Differentiable with respect to `features`."""
        if features.dim() == 1:
            features = features[:, None]
        if features.dim() == 2 and features.shape[0] == self.num_gaussians:
            pair_features = features[self.pair_gauss]
        elif features.dim() == 3 and tuple(features.shape[:2]) == (self.num_views, self.num_gaussians):
            pair_features = features[self.pair_view, self.pair_gauss]
        else:
            raise ValueError(
                f"features must be [N, D] or [C, N, D] with C={self.num_views}, N={self.num_gaussians}, "
                f"got {list(features.shape)}"
            )
        rows = self.render_pairs(pair_features)
        out = rows.new_zeros(self.num_views * self.height * self.width, rows.shape[-1])
        out = out.index_copy(0, self.row_index, rows)
        return out.reshape(self.num_views, self.height, self.width, -1)

    def splat(self, images: Tensor) -> Tensor:
        """The adjoint of `render`: images [C, H, W, D] -> per-view, per-Gaussian weighted sums [C, N, D]
        (e.g. a Gaussian's compositing weight inside a 2D mask)."""
        pairs = self.splat_rows(self.rows_of(images))
        out = pairs.new_zeros(self.num_views * self.num_gaussians, pairs.shape[-1])
        out[self.pair_view * self.num_gaussians + self.pair_gauss] = pairs
        return out.reshape(self.num_views, self.num_gaussians, -1)

    def totals(self) -> Tensor:
        """[C, N] each Gaussian's total compositing weight in each view (0 = not visible there)."""
        out = torch.zeros(self.num_views * self.num_gaussians, dtype=self.weight.dtype)
        out.index_add_(0, self.view * self.num_gaussians + self.gauss, self.weight)
        return out.reshape(self.num_views, self.num_gaussians)

    def alpha(self) -> Tensor:
        """[C, H, W] accumulated opacity per pixel (`coverage` when given)."""
        if self.coverage is not None:
            return self.coverage
        out = torch.zeros(self.num_views * self.height * self.width, dtype=self.weight.dtype)
        out.index_add_(0, self.view * (self.height * self.width) + self.pixel, self.weight)
        return out.reshape(self.num_views, self.height, self.width)


DENSE_KEYS = 64_000_000  # up to this many possible keys, _compact marks them in an array instead of sorting


def _compact(keys: Tensor, num_keys: int) -> tuple[Tensor, Tensor]:
    """(the distinct keys in increasing order [U], each key's position among them [K]) — torch.unique with
    return_inverse, in O(K + num_keys) with a marker array when the key range is small enough (no sort of K)."""
    if num_keys > DENSE_KEYS:
        return torch.unique(keys, return_inverse=True)
    present = torch.zeros(num_keys, dtype=torch.bool)
    present[keys] = True
    distinct = present.nonzero().flatten()
    position = torch.full((num_keys,), -1, dtype=torch.long)
    position[distinct] = torch.arange(len(distinct))
    return distinct, position[keys]


@numba.njit(cache=True, nogil=True)
def _csr(rows, cols, data, num_rows):
    """CSR arrays (indptr, indices, data) of the COO entries (rows, cols, data) by a counting sort on rows
    (O(K), entries keep their order within a row; the entries here have no duplicates)."""
    indptr = np.zeros(num_rows + 1, np.int64)
    for r in rows:
        indptr[r + 1] += 1
    for i in range(num_rows):
        indptr[i + 1] += indptr[i]
    fill = indptr[:-1].copy()
    indices = np.empty(rows.shape[0], np.int64)
    values = np.empty(rows.shape[0], np.float32)
    for k in range(rows.shape[0]):
        at = fill[rows[k]]
        indices[at] = cols[k]
        values[at] = data[k]
        fill[rows[k]] = at + 1
    return indptr, indices, values


def _torch_csr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the matmul we use is stable
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(indices),
                                       torch.from_numpy(data), size=shape)


class _SparseMatmul(torch.autograd.Function):
    """y = W x with the transpose kept ready for the backward pass (W is constant)."""

    @staticmethod
    def forward(ctx, matrix: Tensor, matrix_t: Tensor, x: Tensor) -> Tensor:
        ctx.matrix_t = matrix_t
        return matrix @ x.contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.matrix_t @ grad.contiguous()


@torch.no_grad()
def compositing_weights(
    scene: GaussianScene,
    cameras: Cameras,
    *,
    regions: Tensor | None = None,  # [C, H, W] bool: the pixels wanted in each view (None: all of them)
) -> ViewWeights:
    """All non-zero compositing weights of `scene` seen from `cameras` (see the module docstring), at the
    pixels of `regions` only when given. Only the Gaussians whose footprint can reach a view's wanted pixels
    (their bounding box, engine/render/culling.py) are projected and splatted, so a small window of a big
    scene costs what the window sees, and the weights at the wanted pixels are those of the whole image."""
    view, pixel, gauss, weight = compositing_entries(scene, cameras, regions=regions)
    return ViewWeights(view, pixel, gauss, weight, len(cameras), cameras.height, cameras.width, len(scene))


@torch.no_grad()
def compositing_entries(
    scene: GaussianScene,
    cameras: Cameras,
    *,
    regions: Tensor | None = None,  # [C, H, W] bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The (view [K], pixel [K], gauss [K], weight [K]) entries of `compositing_weights`, without building its
    sparse matrices (for a caller that renumbers the Gaussians first)."""
    parts = per_view_entries(scene, cameras, lambda c, pixel, gauss, weight: (pixel, gauss, weight), regions=regions)
    view = torch.cat([torch.full((len(p[0]),), c, dtype=torch.long) for c, p in enumerate(parts)])
    pixel, gauss, weight = (torch.cat([p[i] for p in parts]) for i in range(3))
    return view, pixel, gauss, weight


@torch.no_grad()
def per_view_entries(
    scene: GaussianScene,
    cameras: Cameras,
    reduce: Callable[[int, Tensor, Tensor, Tensor], T],
    *,
    regions: Tensor | None = None,  # [C, H, W] bool
) -> list[T]:
    """[reduce(c, pixel [K], gauss [K], weight [K]) for each camera c]: each view's entries handed to `reduce`
    as soon as they are made, in the worker that made them, so that a caller who keeps little of them (a sum
    per Gaussian, the rows near a part) never holds every view's entries at once. A Gaussian's entries are
    consecutive (Gaussians front to back, each one's pixels in raster order)."""
    scene = geometry(scene)  # the splatting loop is a CPU (numba) kernel
    cameras = cameras.to("cpu", torch.float32)
    if regions is not None:
        regions = torch.as_tensor(regions).to("cpu", torch.bool)
        if tuple(regions.shape) != (len(cameras), cameras.height, cameras.width):
            raise ValueError(f"regions must be [{len(cameras)}, {cameras.height}, {cameras.width}], "
                             f"got {list(regions.shape)}")

    boxes, reached = reaching_windows(scene, cameras, regions)

    def one(c: int) -> T:
        return reduce(c, *_one_view(scene, cameras[c], None if regions is None else regions[c], boxes[c],
                                    reached[c]))

    return map_views(one, len(cameras))


def reaching_windows(scene: GaussianScene, cameras: Cameras, regions: Tensor | None
                     ) -> tuple[list[tuple[int, int, int, int] | None], list[Tensor]]:
    """(each view's pixel box: the bounding box of its region, None when it is empty; the sorted rows [M_c]
    whose footprint can reach each box), culled in one pass over the scene (engine/render/culling.py)."""
    boxes = [(0, 0, cameras.width, cameras.height) if regions is None else _box(regions[c])
             for c in range(len(cameras))]
    windows = torch.tensor([box or (0, 0, 0, 0) for box in boxes], dtype=torch.float64)
    return boxes, reaching_views(scene.means, scene.scales, scene.opacities, cameras, windows)


def map_views(one: Callable[[int], T], count: int) -> list[T]:
    """[one(c) for c in range(count)], views side by side on the cores (the splatting loop releases the GIL)."""
    workers = min(count, os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, range(count)))
    return [one(c) for c in range(count)]


def _one_view(scene: GaussianScene, camera: Cameras, region: Tensor | None, box: tuple[int, int, int, int] | None,
              rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(pixel, gauss, weight) of one camera, at the pixels of `region` [H, W] (None: all) within `box` (its
    bounding box, None: no pixel), from the `rows` [M] whose footprint can reach the box."""
    if box is None or rows.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    order = depth_order(scene, camera, rows)
    out = splat(order, camera, region, box)
    return out.pixel, order.rows[out.index], out.weight


@dataclass
class Splatted:
    """What `splat` gives for one view: the entries (of the Gaussians it emits) and the sums asked for."""

    pixel: Tensor  # [K] int64 y * width + x
    index: Tensor  # [K] int64 position of the Gaussian in the DepthOrder
    weight: Tensor  # [K] float32
    sums: Tensor | None  # [G, 2] float32 per Gaussian of the order: (sum of weight * pixel_weight, sum of weight)
    coverage: Tensor | None  # [H * W] float32 accumulated opacity over every Gaussian of the order


def splat(order: DepthOrder, camera: Cameras, region: Tensor | None, box: tuple[int, int, int, int], *,
          emit: Tensor | None = None, pixel_weight: Tensor | None = None, coverage: bool = False) -> Splatted:
    """Composite the Gaussians of `order` (one camera's) front to back at the pixels of `region` [H, W] (None:
    all) within `box`. Every Gaussian takes its share of each pixel's transmittance, but only those with
    `emit` [G] bool (None: all) come back as entries; `pixel_weight` [H * W] float32 sums each Gaussian's
    weight times it (and its weight) per Gaussian, `coverage` sums every weight per pixel. The sums are taken in
    float32 in entry order: the same bits as index_add_ over the entries."""
    W, H = camera.width, camera.height
    none = np.zeros(0, np.float32)
    wanted = np.ones(1, np.uint8) if region is None else region.reshape(-1).numpy().view(np.uint8)
    sums = np.zeros((len(order), 2), np.float32) if pixel_weight is not None else np.zeros((0, 2), np.float32)
    cover = np.zeros(W * H, np.float32) if coverage else none
    pix, at, weight = _splat_front_to_back(
        order.means2d, order.conics, order.opacities, order.radii,
        W, H, ALPHA_THRESHOLD, MAX_ALPHA, T_EPS, np.asarray(box, np.int64), wanted, region is not None,
        np.zeros(0, np.uint8) if emit is None else emit.numpy().view(np.uint8),
        none if pixel_weight is None else np.ascontiguousarray(pixel_weight.numpy(), np.float32), sums, cover,
    )
    return Splatted(torch.from_numpy(pix), torch.from_numpy(at), torch.from_numpy(weight),
                    torch.from_numpy(sums) if pixel_weight is not None else None,
                    torch.from_numpy(cover) if coverage else None)


def _box(region: Tensor) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) bounding the True pixels of region [H, W] (x1, y1 exclusive), or None if none."""
    ys = region.any(dim=1).nonzero().flatten()
    if ys.numel() == 0:
        return None
    xs = region.any(dim=0).nonzero().flatten()
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


@numba.njit(cache=True, nogil=True)
def _splat_front_to_back(means2d, conics, opacities, radii, width, height, alpha_min, alpha_max, t_eps,
                         box, wanted, use_wanted, emit, pixel_weight, sums, coverage):
    """Visit Gaussians in depth order and composite each into the pixels of its radius box within `box`
    (x0, y0, x1, y1) and, with `use_wanted`, where wanted[p] (flat [H * W] uint8); a pixel is closed once its
    transmittance would drop to t_eps. Equivalent to per-pixel front-to-back compositing.
    Returns the entries (pixel, Gaussian, float32 weight) of the Gaussians with emit[i] (all when emit is
    empty); when sums / coverage are not empty, sums[i] += (w * pixel_weight[p], w) and coverage[p] += w for
    every weight w, in float32 (see `splat`)."""
    transmittance = np.ones(width * height)
    cap = max(1024, 8 * (box[2] - box[0]) * (box[3] - box[1]))
    out_pix = np.empty(cap, np.int64)
    out_g = np.empty(cap, np.int64)
    out_w = np.empty(cap, np.float32)
    emit_all, use_sums, use_coverage = emit.shape[0] == 0, sums.shape[0] > 0, coverage.shape[0] > 0
    k = 0
    for i in range(means2d.shape[0]):
        mx, my = np.float64(means2d[i, 0]), np.float64(means2d[i, 1])
        a, b, c = np.float64(conics[i, 0]), np.float64(conics[i, 1]), np.float64(conics[i, 2])
        rx, ry = np.int64(radii[i, 0]), np.int64(radii[i, 1])
        opacity = np.float64(opacities[i])
        kept = emit_all or emit[i] != 0
        x0 = max(box[0], int(np.ceil(mx - rx - 0.5)))
        x1 = min(box[2] - 1, int(np.floor(mx + rx - 0.5)))
        y0 = max(box[1], int(np.ceil(my - ry - 0.5)))
        y1 = min(box[3] - 1, int(np.floor(my + ry - 0.5)))
        for py in range(y0, y1 + 1):
            dy = my - (py + 0.5)
            for px in range(x0, x1 + 1):
                p = py * width + px
                if use_wanted and wanted[p] == 0:
                    continue
                T = transmittance[p]
                if T <= 0.0:
                    continue
                dx = mx - (px + 0.5)
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                if sigma < 0.0:
                    continue
                alpha = min(alpha_max, opacity * np.exp(-sigma))
                if alpha < alpha_min:
                    continue
                next_T = T * (1.0 - alpha)
                if next_T <= t_eps:
                    transmittance[p] = 0.0  # closed: later Gaussians are not composited here
                    continue
                transmittance[p] = next_T
                w = np.float32(alpha * T)
                if use_sums:
                    sums[i, 0] += w * pixel_weight[p]
                    sums[i, 1] += w
                if use_coverage:
                    coverage[p] += w
                if not kept:
                    continue
                if k == cap:
                    cap *= 2
                    out_pix = _grow(out_pix, cap)
                    out_g = _grow(out_g, cap)
                    out_w = _grow(out_w, cap)
                out_pix[k] = p
                out_g[k] = i
                out_w[k] = w
                k += 1
    return out_pix[:k].copy(), out_g[:k].copy(), out_w[:k].copy()


@numba.njit(cache=True)
def _grow(array, cap):
    out = np.empty(cap, array.dtype)
    out[: array.shape[0]] = array
    return out
