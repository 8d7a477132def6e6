"""One view's Gaussians projected and put front to back once, and widened without redoing that work.

Splatting compositing weights (compositing.py) needs the Gaussians that can reach a view's window projected
and sorted by depth. Lifting (lift_scope.py) splats every view twice, over a window and then over a wider one
that holds it; the rows reaching the wider window include all those reaching the first, whose projection is
the same per row. So the second pass projects only the new rows and merges the two depth orders (a linear
merge) instead of projecting and sorting everything again: the order is the one a single sort of all rows
gives (depth, ties by row), and so are the weights splatted from it, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras
from ..render._cpu_kernels import argsort_depths
from ..render.cpu import project_arrays
from ..scene import GaussianScene


@dataclass
class DepthOrder:
    """The Gaussians of one view that the projection keeps (radii > 0), front to back, ties by row:
    their projected values as the projection gives them (float32)."""

    rows: Tensor  # [K] int64 scene rows
    depths: np.ndarray  # [K] float32 (> 0: in front of the near plane)
    means2d: np.ndarray  # [K, 2] float32
    conics: np.ndarray  # [K, 3] float32
    opacities: np.ndarray  # [K] float32
    radii: np.ndarray  # [K, 2] int32

    def __len__(self) -> int:
        return len(self.rows)


def depth_order(scene: GaussianScene, camera: Cameras, rows: Tensor) -> DepthOrder:
    """The DepthOrder of `rows` [M] (sorted) of `scene` (a `geometry`: float32 on the CPU) seen by one camera:
    the CPU renderer's projection (compiled, float64 inside) of those rows; float32 like `project_fast`'s."""
    at = rows.numpy()
    means2d, conics, depths, radii, opacities = project_arrays(
        scene.means.numpy()[at], scene.quats.numpy()[at], scene.scales.numpy()[at], scene.opacities.numpy()[at],
        np.asarray(camera.viewmats.numpy(), np.float64), np.asarray(camera.Ks.numpy(), np.float64),
        camera.width, camera.height)
    alive = np.flatnonzero((radii[0] > 0).all(axis=-1))
    depths = depths[0, alive].astype(np.float32)
    by_depth = argsort_depths(depths.view(np.uint32))  # stable (ties by row), like torch's stable argsort
    order = alive[by_depth]
    f32 = np.float32
    return DepthOrder(rows[torch.from_numpy(order)], depths[by_depth], means2d[0, order].astype(f32),
                      conics[0, order].astype(f32), opacities[order].astype(f32), radii[0, order])


def merged(a: DepthOrder, b: DepthOrder) -> DepthOrder:
    """The DepthOrder of the rows of `a` and `b` (no row in both): what `depth_order` of all of them gives."""
    at = torch.from_numpy(_merge(a.depths, a.rows.numpy(), b.depths, b.rows.numpy()))
    pick = at.numpy()
    return DepthOrder(torch.cat([a.rows, b.rows])[at], *(np.concatenate([x, y])[pick] for x, y in (
        (a.depths, b.depths), (a.means2d, b.means2d), (a.conics, b.conics), (a.opacities, b.opacities),
        (a.radii, b.radii))))


@numba.njit(cache=True, nogil=True)
def _merge(depth_a, row_a, depth_b, row_b):
    """Positions in [a, b] of the merge of two (depth, row)-sorted sequences, by (depth, row)."""
    na, nb = depth_a.shape[0], depth_b.shape[0]
    out = np.empty(na + nb, np.int64)
    i, j = 0, 0
    for k in range(na + nb):
        if j == nb or (i < na and (depth_a[i] < depth_b[j] or (depth_a[i] == depth_b[j] and row_a[i] < row_b[j]))):
            out[k] = i
            i += 1
        else:
            out[k] = na + j
            j += 1
    return out


def geometry(scene: GaussianScene) -> GaussianScene:
    """The scene on the CPU in float32, without colours (SH with no coefficients):
    the weights depend on the geometry only, and a big capture's SH are most of its bytes (not copied or
    gathered per view). Not validated: only projection reads it."""
    params = {name: t.detach() for name, t in scene.items()}
    params["sh0"], params["shN"] = params["sh0"][:, :0], params["shN"][:, :0]
    return GaussianScene.trusted(**{name: t.to("cpu", torch.float32) for name, t in params.items()})
