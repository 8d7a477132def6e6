"""The spherical harmonics of GaussianScene's colour coefficients: basis, evaluation, rotation.

A data convention, like engine/scene.py: a scene's `sh [N, K, 3]` means colour(d) = sum_k sh[:, k] Y_k(d) + 0.5
with gsplat's real basis (degree 0-3, its constants and signs). The renderer evaluates it (engine/render) and a
scene transform rotates it (engine/rotate.py); both read it from here, so neither depends on the other.
`shN` (the scene's coefficients past degree 0) holds band l at columns l*l-1 .. (l+1)^2-2.
"""

from __future__ import annotations

import torch
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Basis values [..., (degree+1)^2] for unit directions `dirs [..., 3]`."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [C2[0] * xy, C2[1] * yz, C2[2] * (2.0 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * xy * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(degree: int, coeffs: Tensor, dirs: Tensor) -> Tensor:
    """SH colour (without the +0.5 offset) from `coeffs [..., K, D]` (K >= (degree+1)^2) and `dirs [..., 3]`
    (normalized here); returns [..., D]."""
    k = (degree + 1) ** 2
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    basis = sh_basis(degree, dirs)  # [..., k]
    return (basis[..., None] * coeffs[..., :k, :]).sum(dim=-2)


def sh_rotation(degree: int, rot: Tensor, samples: int = 64) -> list[Tensor]:
    """Per band l = 1..degree, the matrix X [2l+1, 2l+1] with new_coeffs = X @ old_coeffs (float64), such that
    colour seen from direction d after turning by `rot [3, 3]` equals colour seen from R^T d before.

    Fitted by least squares on random directions; exact, since a rotated band is spanned by the same band."""
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(samples, 3, generator=g, dtype=torch.float64), dim=-1)
    before = sh_basis(degree, dirs @ rot.double())  # basis at R^T d, [S, K]
    after = sh_basis(degree, dirs)  # basis at d
    bands = []
    for l in range(1, degree + 1):
        sl = slice(l * l, (l + 1) * (l + 1))
        # colour(d) = sum_j c'_j Y_j(d) must equal sum_j c_j Y_j(R^T d): Y(R^T d) = A Y(d) with A = X^T.
        a_t = torch.linalg.lstsq(after[:, sl], before[:, sl]).solution  # [2l+1, 2l+1] = A^T
        bands.append(a_t)
    return bands


def rotate_shN(shN: Tensor, degree: int, rot: Tensor) -> Tensor:
    """The coefficients past degree 0, `shN [N, (degree+1)^2 - 1, C]`, of the same Gaussians turned by
    `rot [3, 3]` (same dtype and device as `shN`; computed in float64)."""
    if degree == 0:
        return shN
    rotated = []
    for l, x in enumerate(sh_rotation(degree, rot.to(torch.float64)), start=1):
        band = shN[:, l * l - 1 : (l + 1) * (l + 1) - 1].double()  # [N, 2l+1, C]
        rotated.append(torch.einsum("ij,njc->nic", x.to(shN.device), band))
    return torch.cat(rotated, dim=1).to(shN.dtype)
