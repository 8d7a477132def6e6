"""EWA projection of 3D Gaussians to screen space, in plain differentiable torch, following gsplat 1.5.x
(`fully_fused_projection`, pinhole, no antialiasing compensation):

- camera-space mean t = R m + T; culled when t.z < near_plane (0.01) or t.z > far_plane (as gsplat);
- Jacobian of the perspective projection with x/z, y/z clamped to 1.3x the half field of view;
- cov2d = J R Σ Rᵀ Jᵀ + eps2d·I (eps2d = 0.3, the low-pass filter);
- conic = cov2d⁻¹; culled when det(cov2d) <= 0;
- opacity-aware radius: extend = min(3.33, sqrt(2 ln(opacity / (1/255)))), radius_x = ceil(extend·sqrt(cov_xx)),
  radius_y likewise (capped at 2^30 so the int32 conversion cannot overflow); culled when opacity < 1/255, when both radii <= radius_clip (0), or when the box lies
  entirely outside the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..sh import eval_sh

EPS2D = 0.3
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
ALPHA_THRESHOLD = 1.0 / 255.0
MAX_EXTEND = 3.33
# Radii are capped before the int32 conversion (gsplat's float->int conversion saturates on the GPU).
RADIUS_MAX = float(2**30)


@dataclass
class Projected:
    means2d: Tensor  # [C, N, 2] pixel coordinates
    conics: Tensor  # [C, N, 3] upper triangle of the inverse 2D covariance (a, b, c)
    depths: Tensor  # [C, N] camera-space z
    radii: Tensor  # [C, N, 2] int32 pixel half-extents; 0 means culled
    opacities: Tensor  # [C, N] activated opacities


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[N, 4] (w, x, y, z), normalized here -> rotation matrices [N, 3, 3]."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))


def covariances_3d(quats: Tensor, log_scales: Tensor) -> Tensor:
    """Σ = R S Sᵀ Rᵀ [N, 3, 3] from raw quats [N, 4] and log-scales [N, 3]."""
    rot = quat_to_rotmat(quats)
    m = rot * torch.exp(log_scales)[:, None, :]
    return m @ m.transpose(-1, -2)


def project(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
) -> Projected:
    R = viewmats[:, None, :3, :3]  # [C, 1, 3, 3]
    T = viewmats[:, None, :3, 3]  # [C, 1, 3]
    t = (R @ means[None, :, :, None])[..., 0] + T  # [C, N, 3]
    cov_c = R @ covariances_3d(quats, log_scales)[None] @ R.transpose(-1, -2)  # [C, N, 3, 3]

    fx, fy = Ks[:, 0, 0][:, None], Ks[:, 1, 1][:, None]
    cx, cy = Ks[:, 0, 2][:, None], Ks[:, 1, 2][:, None]
    tz = t[..., 2]
    valid_z = (tz >= NEAR_PLANE) & (tz <= FAR_PLANE)
    z = torch.where(valid_z, tz, torch.ones_like(tz))  # keep the math finite for culled Gaussians
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, t[..., 0] / z))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, t[..., 1] / z))
    zeros = torch.zeros_like(z)
    J = torch.stack(
        [fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(z.shape + (2, 3))
    cov2d = J @ cov_c @ J.transpose(-1, -2)
    a = cov2d[..., 0, 0] + EPS2D
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + EPS2D
    det = a * c - b * b
    valid = valid_z & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * t[..., 0] / z + cx, fy * t[..., 1] / z + cy], dim=-1)

    opac = torch.sigmoid(opacity_logits)[None].expand_as(z)
    with torch.no_grad():
        valid = valid & (opac >= ALPHA_THRESHOLD)
        extend = torch.clamp(torch.sqrt(2.0 * torch.log(torch.clamp_min(opac / ALPHA_THRESHOLD, 1.0))), max=MAX_EXTEND)
        rx = torch.clamp(torch.ceil(extend * torch.sqrt(torch.clamp_min(a, 0.0))), max=RADIUS_MAX)
        ry = torch.clamp(torch.ceil(extend * torch.sqrt(torch.clamp_min(c, 0.0))), max=RADIUS_MAX)
        valid = valid & ((rx > 0) | (ry > 0))
        mx, my = means2d[..., 0], means2d[..., 1]
        inside = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        valid = valid & inside
        radii = torch.stack([rx, ry], dim=-1).to(torch.int32) * valid[..., None]
    return Projected(means2d, conics, tz, radii, opac)


def view_colors(
    sh: Tensor,  # [N, K, 3]
    sh_degree: int,
    means: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
) -> Tensor:
    """Per-camera colours [C, N, 3]: SH evaluated along camera->Gaussian directions, +0.5, clamped at 0."""
    campos = torch.linalg.inv(viewmats.detach())[:, :3, 3]  # [C, 3]
    dirs = means[None] - campos[:, None, :]
    return torch.clamp_min(eval_sh(sh_degree, sh[None].expand(len(viewmats), -1, -1, -1), dirs) + 0.5, 0.0)
