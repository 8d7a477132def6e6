"""Operations on soft masks [N] in [0, 1]: boolean algebra, grow / shrink, removal of small islands.

Boolean operations use the fuzzy (min / max) algebra, which is exact on hard {0, 1} masks and keeps soft edges
soft. Grow and shrink work on the k-nearest-neighbour graph of the Gaussian centres (a soft dilation /
erosion); islands are connected components of the selected Gaussians under a radius graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _check(*masks: Tensor) -> None:
    shapes = {tuple(m.shape) for m in masks}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"masks must be [N] tensors of one length, got shapes {sorted(shapes)}")


def add(a: Tensor, b: Tensor) -> Tensor:
    """Union: max(a, b)."""
    _check(a, b)
    return torch.maximum(a, b)


def subtract(a: Tensor, b: Tensor) -> Tensor:
    """a without b: min(a, 1 - b)."""
    _check(a, b)
    return torch.minimum(a, 1.0 - b)


def intersect(a: Tensor, b: Tensor) -> Tensor:
    """Intersection: min(a, b)."""
    _check(a, b)
    return torch.minimum(a, b)


def invert(a: Tensor) -> Tensor:
    """Complement: 1 - a."""
    _check(a)
    return 1.0 - a


def knn_graph(means: Tensor, k: int) -> Tensor:
    """[N, k] indices of each centre's k nearest other centres (fewer columns if N <= k)."""
    from scipy.spatial import cKDTree

    pts = means.detach().float().cpu().numpy().astype(np.float64)
    n = len(pts)
    k = min(k, n - 1)
    if k < 1:
        return torch.zeros(n, 0, dtype=torch.long)
    _, idx = cKDTree(pts).query(pts, k=k + 1)
    return torch.from_numpy(np.asarray(idx).reshape(n, k + 1)[:, 1:].astype(np.int64))


def nearest(means: Tensor, among: Tensor, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """For each of the Gaussians `queries` [Q] (indices), its k nearest among the Gaussians `among` [A]
    (indices, k <= A): distances [Q, k] and positions in `among` [Q, k] (long), nearest first."""
    from scipy.spatial import cKDTree

    pts = means.detach().float().cpu().numpy().astype(np.float64)
    dist, idx = cKDTree(pts[among.numpy()]).query(pts[queries.numpy()], k=k)
    shape = (len(queries), k)
    return (torch.from_numpy(np.asarray(dist, dtype=np.float32).reshape(shape)),
            torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(shape)))


def grow(mask: Tensor, means: Tensor, *, k: int = 8, steps: int = 1, neighbours: Tensor | None = None) -> Tensor:
    """Soft dilation: each step a Gaussian takes the max of its own and its k nearest neighbours' weights."""
    return _morph(mask, means, k, steps, neighbours, torch.maximum, lambda v: v.max(dim=1).values)


def shrink(mask: Tensor, means: Tensor, *, k: int = 8, steps: int = 1, neighbours: Tensor | None = None) -> Tensor:
    """Soft erosion: each step a Gaussian takes the min of its own and its k nearest neighbours' weights."""
    return _morph(mask, means, k, steps, neighbours, torch.minimum, lambda v: v.min(dim=1).values)


def _morph(mask, means, k, steps, neighbours, combine, reduce) -> Tensor:
    _check(mask)
    if means.shape != (len(mask), 3):
        raise ValueError(f"means must be [{len(mask)}, 3], got {list(means.shape)}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    nb = knn_graph(means, k) if neighbours is None else neighbours
    out = mask.float().cpu().clone()
    if nb.shape[1] == 0:
        return out
    for _ in range(steps):
        out = combine(out, reduce(out[nb]))
    return out


def remove_islands(
    mask: Tensor,
    means: Tensor,
    *,
    min_size: int | None = None,
    min_fraction: float = 0.05,
    radius: float | None = None,
    threshold: float = 0.5,
) -> Tensor:
    """Zero the weights of small disconnected groups of selected Gaussians (weight > threshold).

    Two selected Gaussians are connected when their centres are closer than `radius` (default: three times
    the median nearest-neighbour spacing among the selected ones). A component is removed when it has fewer
    than `min_size` Gaussians (default: `min_fraction` of the selected count, at least 2).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    _check(mask)
    out = mask.float().cpu().clone()
    selected = (out > threshold).nonzero().flatten()
    if len(selected) < 2:
        return out
    pts = means.detach().float().cpu()[selected].numpy().astype(np.float64)
    tree = cKDTree(pts)
    if radius is None:
        d, _ = tree.query(pts, k=2)
        radius = 3.0 * float(np.median(d[:, 1]))
    pairs = tree.query_pairs(radius, output_type="ndarray")
    n = len(selected)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=count)
    limit = max(2, int(round(min_fraction * n))) if min_size is None else int(min_size)
    small = sizes[labels] < limit
    out[selected[torch.from_numpy(small)]] = 0.0
    return out
