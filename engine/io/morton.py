"""Morton (Z-order) ordering of positions: the spatial sort SOG and compressed .ply writers use so that
neighbouring rows / pixels hold nearby Gaussians (tighter chunk bounds, better image compression)."""

from __future__ import annotations

import numpy as np

BITS = 10  # per axis: 2^30 cells over the bounding box


def morton_order(means: np.ndarray) -> np.ndarray:
    """Indices [N] sorting positions [N, 3] along a 3-D Morton curve over their bounding box (stable)."""
    means = np.asarray(means, np.float64)
    if len(means) == 0:
        return np.zeros(0, np.int64)
    lo, hi = means.min(axis=0), means.max(axis=0)
    top = (1 << BITS) - 1
    cells = np.clip(((means - lo) / np.where(hi > lo, hi - lo, 1.0) * top).astype(np.int64), 0, top)
    code = np.zeros(len(means), np.int64)
    for bit in range(BITS):
        for axis in range(3):
            code |= ((cells[:, axis] >> bit) & 1) << (3 * bit + (2 - axis))
    return np.argsort(code, kind="stable")
