"""Rigid rotation of a whole scene: positions, Gaussian orientations and view-dependent colour.

Used to turn a scene from one up axis to another (the web-viewer copy, tests that compare a scene with a turned
copy). SH coefficients are rotated band by band (engine/sh.py), so colour seen from direction d after the turn
equals colour seen from R^T d before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .scene import GaussianScene
from .sh import rotate_shN
from .up import rotation_between


def matrix_to_quat(rot: Tensor) -> Tensor:
    """Unit quaternion (w, x, y, z) [4] float64 of a rotation matrix [3, 3] (Shepperd's method)."""
    m = rot.double()
    trace = float(m[0, 0] + m[1, 1] + m[2, 2])
    if trace > 0:
        s = 2.0 * (trace + 1.0) ** 0.5
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(torch.argmax(torch.diagonal(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * float(1.0 + m[i, i] - m[j, j] - m[k, k]) ** 0.5
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = torch.tensor([float(v) for v in q], dtype=torch.float64)
    return q / q.norm()


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b of (w, x, y, z) quaternions [..., 4]."""
    w1, x1, y1, z1 = a.unbind(-1)
    w2, x2, y2, z2 = b.unbind(-1)
    return torch.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], dim=-1)


def rotate_scene(scene: GaussianScene, rot: Tensor) -> GaussianScene:
    """`scene` turned by the rotation matrix `rot [3, 3]` about the origin (a new scene, same dtype/device)."""
    r = rot.to(torch.float64)
    dtype, device = scene.dtype, scene.device
    means = (scene.means.double() @ r.T.to(device)).to(dtype)
    quats = quat_multiply(matrix_to_quat(r).to(device), scene.quats.double()).to(dtype)
    shN = rotate_shN(scene.shN, scene.sh_degree, r)
    return scene.replace(means=means, quats=quats, shN=shN)


def turn_scene(scene: GaussianScene, src_up, dst_up) -> GaussianScene:
    """`scene` turned so that its up `src_up` points along `dst_up` (the smallest such rotation)."""
    return rotate_scene(scene, rotation_between(src_up, dst_up))
