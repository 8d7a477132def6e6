"""Test helper: write .ksplat files (modes 0-2) byte by byte, one Gaussian at a time with struct.

Independent of engine.io.ksplat (no shared code, a per-row loop instead of numpy views) so reader tests do
not check one codec against itself. splat-transform cannot write .ksplat, so this is how test files are made.
"""

from __future__ import annotations

import math
import struct

import numpy as np

C0 = 0.28209479177387814
BAND_WIDTHS = (3, 5, 7)


def build_ksplat(scene, mode: int, bucket_capacity: int = 8, sh_range=(-1.5, 1.5), range_q: int = 32767) -> bytes:
    """A one-section .ksplat of `scene` (a GaussianScene); full buckets of `bucket_capacity`, one partial."""
    n, degree = len(scene), scene.sh_degree
    means = scene.means.double().numpy()
    linear = np.exp(scene.scales.double().numpy())
    quats = scene.quats.double().numpy()
    rgb = np.clip(np.round((scene.sh0[:, 0, :].double().numpy() * C0 + 0.5) * 255), 0, 255).astype(int)
    alpha = np.clip(np.round(255 / (1 + np.exp(-scene.opacities.double().numpy()))), 0, 255).astype(int)
    shN = scene.shN.double().numpy()
    full = n // bucket_capacity
    partial_sizes = [n - full * bucket_capacity] if n % bucket_capacity else []
    buckets = full + len(partial_sizes)
    bucket_of = [min(i // bucket_capacity, buckets - 1) for i in range(n)]
    centres = [means[[i for i in range(n) if bucket_of[i] == b]].mean(axis=0) for b in range(buckets)]
    block = 2.0 * max([float(np.abs(means[i] - centres[bucket_of[i]]).max()) for i in range(n)] + [1e-3]) * 1.01
    values = {0: 0, 1: 9, 2: 24, 3: 45}[degree]

    head = bytearray(4096)
    head[0], head[1] = 0, 1
    struct.pack_into("<I", head, 4, 1)
    struct.pack_into("<I", head, 16, n)
    struct.pack_into("<H", head, 20, mode)
    struct.pack_into("<ff", head, 36, *sh_range)
    section = bytearray(1024)
    struct.pack_into("<IIII", section, 0, n, n, bucket_capacity, buckets)
    struct.pack_into("<f", section, 16, block)
    struct.pack_into("<H", section, 20, 12)
    struct.pack_into("<I", section, 24, range_q if mode else 0)
    struct.pack_into("<II", section, 32, full, len(partial_sizes))
    struct.pack_into("<H", section, 40, degree)
    table = b"".join(struct.pack("<I", s) for s in partial_sizes) + b"".join(struct.pack("<3f", *c) for c in centres)
    rows = bytearray()
    f = "f" if mode == 0 else "e"
    for i in range(n):
        if mode == 0:
            rows += struct.pack("<3f", *means[i])
        else:
            step = block / 2.0 / range_q
            q = [int(round((means[i][a] - centres[bucket_of[i]][a]) / step + range_q)) for a in range(3)]
            rows += struct.pack("<3H", *q)
        rows += struct.pack(f"<3{f}", *linear[i])
        rows += struct.pack(f"<4{f}", *quats[i])
        rows += bytes([*rgb[i], alpha[i]])
        flat = []
        first = 0
        for band in range(degree):
            width = BAND_WIDTHS[band]
            for c in range(3):
                flat += [shN[i, first + k, c] for k in range(width)]
            first += width
        assert len(flat) == values
        if mode == 0:
            rows += struct.pack(f"<{values}f", *flat)
        elif mode == 1:
            rows += struct.pack(f"<{values}e", *flat)
        else:
            lo, hi = sh_range
            rows += bytes(int(min(255, max(0, math.floor((v - lo) / (hi - lo) * 255 + 0.5)))) for v in flat)
    return bytes(head + section + table + rows)
