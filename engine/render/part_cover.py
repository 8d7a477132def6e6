"""How much of each pixel a part of a big scene covers, occlusion included, at the cost of the part's neighbourhood.

The edit asks, for each candidate view, how much of its part the rest of the scene hides: the whole scene
rendered with the part's rows coloured 1 and every other row 0 (`render(scene, cameras, colors=indicator)`).
Drawn whole, a 1.2M-Gaussian capture costs ~0.5 s per view; `part_cover` draws the same picture, bit for bit,
from the rows that can change it:
- a row coloured 0 adds exactly 0 to a pixel; it only lowers the transmittance of the rows after it in its
  tiles' depth-sorted lists (sorted by float32 depth, ties by row: an order-keeping subset keeps each list's
  order), and a pixel no part row reaches stays 0 whatever else is drawn there;
- so a row matters only in a tile that lists some part row, and only if it sorts no later than that tile's
  deepest part row (depth <= that depth). Every other row changes no pixel of the indicator channel.
First a cheap pass over all rows (engine/render/culling.py's footprint bound, no projection) keeps those that
can reach a part tile no deeper than that tile's deepest part row (with a margin); those are projected and
kept by the exact rule above, on the projection and tile binning the render itself uses.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from ..camera import Cameras
from ..scene import GaussianScene
from . import _cpu_kernels as K
from .cpu import _np, project_fast, rasterize
from .culling import reaching_tiles
from .projection import Projected

FAR_MARGIN = 1e-3  # relative: the cheap pass's float64 depth bound vs the float32 sort key


@njit(cache=True, nogil=True)
def _deepest(rect, keys, fars):
    """fars[c, y, x] = the largest key of the rows listed in tile (y, x) of camera c (rect [C, P, 4] tile ranges
    x0, y0, x1, y1 as K.tile_rects writes them, empty for culled rows); -inf stays where none is."""
    for c in range(rect.shape[0]):
        for n in range(rect.shape[1]):
            for y in range(rect[c, n, 1], rect[c, n, 3]):
                for x in range(rect[c, n, 0], rect[c, n, 2]):
                    fars[c, y, x] = max(fars[c, y, x], keys[c, n])


@njit(cache=True, nogil=True)
def _sorts_before(rect, keys, fars, out):
    """out[n] = row n (rect [N, 4], keys [N] of one camera) is listed in some tile whose deepest part key
    (fars [TH, TW]) is >= its own key."""
    for n in range(rect.shape[0]):
        for y in range(rect[n, 1], rect[n, 3]):
            for x in range(rect[n, 0], rect[n, 2]):
                if keys[n] <= fars[y, x]:
                    out[n] = True


def _tiles(proj: Projected, tiles_w: int, tiles_h: int) -> tuple[np.ndarray, np.ndarray]:
    """(tile ranges [C, N, 4], float32 sort keys [C, N]): the renderer's own binning (cpu.Tiles)."""
    rect, _ = K.tile_rects(_np(proj.means2d, np.float32), _np(proj.radii), tiles_w, tiles_h)
    return rect, _np(proj.depths, np.float32)


def _geometry(arrays: dict[str, np.ndarray], rows: np.ndarray) -> GaussianScene:
    """The rows' geometry (arrays: the scene's means, quats, scales, opacities) as a degree-0 scene of no colour:
    what a projection reads. Gathered by numpy: torch's threaded gathers cost more on a busy machine."""
    geometry = {name: torch.from_numpy(a[rows]) for name, a in arrays.items()}
    n, dtype = len(rows), geometry["means"].dtype
    return GaussianScene.trusted(**geometry, sh0=torch.zeros(1, 1, 3, dtype=dtype).expand(n, 1, 3),
                                 shN=torch.zeros(1, 0, 3, dtype=dtype).expand(n, 0, 3))


def _rows(proj: Projected, keep: np.ndarray) -> Projected:  # keep: [M] row indices
    return Projected(*(torch.from_numpy(_np(t)[:, keep]) for t in (proj.means2d, proj.conics, proj.depths,
                                                                    proj.radii, proj.opacities)))


@torch.no_grad()
def part_cover(
    scene: GaussianScene,  # on the CPU, float32 or float64
    part: Tensor,  # [N] bool: the part's rows
    cameras: Cameras,
) -> Tensor:  # [C, H, W]
    """`render(scene, cameras, colors=part[:, None], backend="torch").rgb[..., 0]`, bit for bit, drawing per
    camera only the rows that can change it (module docstring)."""
    cameras = cameras.to(scene.device, scene.dtype)
    W, H = int(cameras.width), int(cameras.height)
    tiles_w, tiles_h = -(-W // K.TILE_SIZE), -(-H // K.TILE_SIZE)
    arrays = {name: _np(getattr(scene, name)) for name in ("means", "quats", "scales", "opacities")}
    part = _np(part)
    rect, keys = _tiles(project_fast(_geometry(arrays, np.flatnonzero(part)), cameras), tiles_w, tiles_h)
    fars = np.full((len(cameras), tiles_h, tiles_w), -np.inf, np.float32)
    _deepest(rect, keys, fars)
    shown = np.isfinite(fars).any((1, 2))  # [C]: some part row drawn
    # the cheap pass: rows whose footprint bound reaches a tile no deeper than its deepest part row (a margin:
    # its depth is float64, the sort key float32)
    reach = np.where(np.isfinite(fars), fars.astype(np.float64) * (1.0 + FAR_MARGIN), -np.inf)
    colours = part.astype(_np(scene.means[:0]).dtype)
    images = []
    for c, rows in enumerate(reaching_tiles(scene.means, scene.scales, scene.opacities, cameras, reach)):
        if not shown[c]:  # no part row drawn: every pixel is 0
            images.append(torch.zeros(1, H, W, dtype=scene.dtype))
            continue
        rows = rows.numpy()
        proj = project_fast(_geometry(arrays, rows), cameras[c])
        rect_c, keys_c = _tiles(proj, tiles_w, tiles_h)
        keep = np.zeros(len(rows), np.bool_)
        _sorts_before(rect_c[0], keys_c[0], fars[c], keep)
        keep = np.flatnonzero(keep)
        out, _, _ = rasterize(_rows(proj, keep), torch.from_numpy(colours[rows[keep]])[None, :, None], W, H)
        images.append(out[..., 0])
    return torch.cat(images)
