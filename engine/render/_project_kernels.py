"""Compiled (numba) projection and SH colour kernels with hand-written backward passes.

They compute exactly what engine/render/projection.py computes in torch (gsplat's pinhole EWA projection
and SH evaluation, see there for the rules), fused per Gaussian so that 150k Gaussians take milliseconds
instead of the ~100 small torch ops and their autograd graph. Tests compare both, values and gradients.

The projection kernels take and return float64 arrays only (one compiled specialization: compile time
matters in a fresh checkout); the SH kernels follow the dtype of the coefficients. All are serial over a
range [lo, hi) of Gaussians, write into preallocated outputs and release the GIL, so the caller splits the
range over threads. Gradients with respect to the cameras are not computed (cameras are not optimized
here; the torch path handles that case).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Indices into the `consts` array of the projection kernels.
P_EPS2D, P_NEAR, P_FAR, P_ALPHA_THR, P_MAX_EXTEND, P_RADIUS_MAX = range(6)

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)


@njit(cache=True)
def _rotmat(w, x, y, z):
    """Rotation matrix (row-major 9-tuple) of a *normalized* quaternion (w, x, y, z)."""
    return (
        1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
        2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
        2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y),
    )


# Small fixed-size matrix algebra on row-major tuples (kept in registers; numpy's @ on 3x3 would call BLAS).
@njit(cache=True)
def _mm33(a, b):
    return (
        a[0] * b[0] + a[1] * b[3] + a[2] * b[6], a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
        a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
        a[3] * b[0] + a[4] * b[3] + a[5] * b[6], a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
        a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
        a[6] * b[0] + a[7] * b[3] + a[8] * b[6], a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
        a[6] * b[2] + a[7] * b[5] + a[8] * b[8],
    )


@njit(cache=True)
def _t33(a):
    return (a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8])


@njit(cache=True)
def _m23_33(j, s):
    """[2,3] @ [3,3] -> [2,3]."""
    return (
        j[0] * s[0] + j[1] * s[3] + j[2] * s[6], j[0] * s[1] + j[1] * s[4] + j[2] * s[7],
        j[0] * s[2] + j[1] * s[5] + j[2] * s[8],
        j[3] * s[0] + j[4] * s[3] + j[5] * s[6], j[3] * s[1] + j[4] * s[4] + j[5] * s[7],
        j[3] * s[2] + j[4] * s[5] + j[5] * s[8],
    )


@njit(cache=True)
def _m23_t23(a, b):
    """[2,3] @ [2,3]^T -> [2,2]."""
    return (
        a[0] * b[0] + a[1] * b[1] + a[2] * b[2], a[0] * b[3] + a[1] * b[4] + a[2] * b[5],
        a[3] * b[0] + a[4] * b[1] + a[5] * b[2], a[3] * b[3] + a[4] * b[4] + a[5] * b[5],
    )


@njit(cache=True)
def _m22_23(v, j):
    """[2,2] @ [2,3] -> [2,3]."""
    return (
        v[0] * j[0] + v[1] * j[3], v[0] * j[1] + v[1] * j[4], v[0] * j[2] + v[1] * j[5],
        v[2] * j[0] + v[3] * j[3], v[2] * j[1] + v[3] * j[4], v[2] * j[2] + v[3] * j[5],
    )


@njit(cache=True)
def _t23_23(a, b):
    """[2,3]^T @ [2,3] -> [3,3]."""
    return (
        a[0] * b[0] + a[3] * b[3], a[0] * b[1] + a[3] * b[4], a[0] * b[2] + a[3] * b[5],
        a[1] * b[0] + a[4] * b[3], a[1] * b[1] + a[4] * b[4], a[1] * b[2] + a[4] * b[5],
        a[2] * b[0] + a[5] * b[3], a[2] * b[1] + a[5] * b[4], a[2] * b[2] + a[5] * b[5],
    )


@njit(cache=True)
def _mm22(a, b):
    return (a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3], a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3])


@njit(cache=True)
def _covariance(quat, log_scale):
    """(R, s, Sigma, |q|): rotation (9-tuple), scales (3-tuple), Sigma = R S S^T R^T (9-tuple)."""
    qw = np.float64(quat[0])
    qx = np.float64(quat[1])
    qy = np.float64(quat[2])
    qz = np.float64(quat[3])
    qn = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    inv = 1.0 / max(qn, 1e-12)  # torch.nn.functional.normalize's eps
    R = _rotmat(qw * inv, qx * inv, qy * inv, qz * inv)
    s = (math.exp(np.float64(log_scale[0])), math.exp(np.float64(log_scale[1])), math.exp(np.float64(log_scale[2])))
    M = (R[0] * s[0], R[1] * s[1], R[2] * s[2], R[3] * s[0], R[4] * s[1], R[5] * s[2],
         R[6] * s[0], R[7] * s[1], R[8] * s[2])
    return R, s, _mm33(M, _t33(M)), qn


@njit(cache=True)
def _camera(viewmat, K):
    """(Rv 9-tuple, tv 3-tuple, fx, fy, cx, cy) in float64."""
    Rv = (
        np.float64(viewmat[0, 0]), np.float64(viewmat[0, 1]), np.float64(viewmat[0, 2]),
        np.float64(viewmat[1, 0]), np.float64(viewmat[1, 1]), np.float64(viewmat[1, 2]),
        np.float64(viewmat[2, 0]), np.float64(viewmat[2, 1]), np.float64(viewmat[2, 2]),
    )
    tv = (np.float64(viewmat[0, 3]), np.float64(viewmat[1, 3]), np.float64(viewmat[2, 3]))
    return Rv, tv, np.float64(K[0, 0]), np.float64(K[1, 1]), np.float64(K[0, 2]), np.float64(K[1, 2])


@njit(cache=True)
def _to_camera(Rv, tv, m):
    return (
        Rv[0] * m[0] + Rv[1] * m[1] + Rv[2] * m[2] + tv[0],
        Rv[3] * m[0] + Rv[4] * m[1] + Rv[5] * m[2] + tv[1],
        Rv[6] * m[0] + Rv[7] * m[1] + Rv[8] * m[2] + tv[2],
    )


@njit(cache=True)
def _jacobian(t, width, height, fx, fy, cx, cy):
    """(J [2,3] 6-tuple, tx, ty, clamped_x, clamped_y): perspective Jacobian with gsplat's 1.3x fov clamp."""
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lxp = (width - cx) / fx + 0.3 * tan_fovx
    lxn = cx / fx + 0.3 * tan_fovx
    lyp = (height - cy) / fy + 0.3 * tan_fovy
    lyn = cy / fy + 0.3 * tan_fovy
    z = t[2]
    rx = t[0] / z
    ry = t[1] / z
    tx = z * min(lxp, max(-lxn, rx))
    ty = z * min(lyp, max(-lyn, ry))
    J = (fx / z, 0.0, -fx * tx / (z * z), 0.0, fy / z, -fy * ty / (z * z))
    return J, tx, ty, not (-lxn <= rx <= lxp), not (-lyn <= ry <= lyp)


@njit(cache=True, nogil=True)
def project_fwd(lo, hi, means, quats, log_scales, opacity_logits, viewmats, Ks, width, height, consts,
                means2d, conics, depths, radii, opac):
    """For Gaussians lo..hi-1: means [N,3], quats [N,4], log_scales [N,3], opacity_logits [N], viewmats
    [C,4,4], Ks [C,3,3] -> writes means2d [C,N,2], conics [C,N,3], depths [C,N], radii [C,N,2] int32,
    opac [N] (zero-initialized by the caller). Culled Gaussians keep radii 0."""
    C = viewmats.shape[0]
    eps2d = np.float64(consts[P_EPS2D])
    near = np.float64(consts[P_NEAR])
    far = np.float64(consts[P_FAR])
    thr = np.float64(consts[P_ALPHA_THR])
    max_extend = np.float64(consts[P_MAX_EXTEND])
    radius_max = np.float64(consts[P_RADIUS_MAX])
    for n in range(lo, hi):
        o = 1.0 / (1.0 + math.exp(-np.float64(opacity_logits[n])))
        opac[n] = o
        R, s, Sigma, qn = _covariance(quats[n], log_scales[n])
        m = (np.float64(means[n, 0]), np.float64(means[n, 1]), np.float64(means[n, 2]))
        for c in range(C):
            Rv, tv, fx, fy, cx, cy = _camera(viewmats[c], Ks[c])
            t = _to_camera(Rv, tv, m)
            depths[c, n] = t[2]
            if t[2] < near or t[2] > far:
                continue
            J, tx, ty, _, _ = _jacobian(t, width, height, fx, fy, cx, cy)
            Sc = _mm33(_mm33(Rv, Sigma), _t33(Rv))
            cov2d = _m23_t23(_m23_33(J, Sc), J)
            A = cov2d[0] + eps2d
            B = cov2d[1]
            Cc = cov2d[3] + eps2d
            det = A * Cc - B * B
            u = fx * t[0] / t[2] + cx
            v = fy * t[1] / t[2] + cy
            means2d[c, n, 0] = u
            means2d[c, n, 1] = v
            if det <= 0.0:
                continue
            conics[c, n, 0] = Cc / det
            conics[c, n, 1] = -B / det
            conics[c, n, 2] = A / det
            if o < thr:
                continue
            extend = min(max_extend, math.sqrt(2.0 * math.log(o / thr)))
            rx = min(math.ceil(extend * math.sqrt(A)), radius_max)
            ry = min(math.ceil(extend * math.sqrt(Cc)), radius_max)
            if rx <= 0.0 and ry <= 0.0:
                continue
            if u + rx <= 0.0 or u - rx >= width or v + ry <= 0.0 or v - ry >= height:
                continue
            radii[c, n, 0] = int(rx)
            radii[c, n, 1] = int(ry)


@njit(cache=True, nogil=True)
def project_bwd(lo, hi, means, quats, log_scales, opacity_logits, viewmats, Ks, width, height, consts, radii,
                v_means2d, v_conics, v_depths, v_opac, g_means, g_quats, g_scales, g_logits):
    """Gradients of project_fwd for Gaussians lo..hi-1, written into g_means [N,3], g_quats [N,4], g_scales
    [N,3], g_logits [N] (zero-initialized by the caller), given v_means2d [C,N,2], v_conics [C,N,3],
    v_depths [C,N] and v_opac [N]. Culled (Gaussian, camera) pairs get no geometric gradient, as in the
    torch version where they touch no pixel."""
    C = viewmats.shape[0]
    eps2d = np.float64(consts[P_EPS2D])
    for n in range(lo, hi):
        o = 1.0 / (1.0 + math.exp(-np.float64(opacity_logits[n])))
        g_logits[n] = v_opac[n] * o * (1.0 - o)
        visible = False
        for c in range(C):
            if radii[c, n, 0] > 0 or radii[c, n, 1] > 0:
                visible = True
        if not visible:
            continue
        R, s, Sigma, qn = _covariance(quats[n], log_scales[n])
        m = (np.float64(means[n, 0]), np.float64(means[n, 1]), np.float64(means[n, 2]))
        vS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # d/d Sigma
        vmx = 0.0
        vmy = 0.0
        vmz = 0.0
        for c in range(C):
            if radii[c, n, 0] <= 0 and radii[c, n, 1] <= 0:
                continue
            Rv, tv, fx, fy, cx, cy = _camera(viewmats[c], Ks[c])
            t = _to_camera(Rv, tv, m)
            x, y, z = t
            J, tx, ty, clamp_x, clamp_y = _jacobian(t, width, height, fx, fy, cx, cy)
            Sc = _mm33(_mm33(Rv, Sigma), _t33(Rv))
            cov2d = _m23_t23(_m23_33(J, Sc), J)
            A = cov2d[0] + eps2d
            B = cov2d[1]
            Cc = cov2d[3] + eps2d
            det = A * Cc - B * B
            Q = (Cc / det, -B / det, -B / det, A / det)  # conic matrix
            vb = 0.5 * np.float64(v_conics[c, n, 1])
            Vq = (np.float64(v_conics[c, n, 0]), vb, vb, np.float64(v_conics[c, n, 2]))
            V2 = _mm22(_mm22(Q, Vq), Q)  # d/d cov2d = -Q Vq Q (negated below), symmetric split
            V2 = (-V2[0], -V2[1], -V2[2], -V2[3])
            vSc = _t23_23(J, _m22_23(V2, J))  # J^T V2 J
            vJ = _m23_33(_m22_23(V2, J), Sc)  # times 2 below (V2 and Sc symmetric)
            vJ = (2.0 * vJ[0], 2.0 * vJ[1], 2.0 * vJ[2], 2.0 * vJ[3], 2.0 * vJ[4], 2.0 * vJ[5])
            vu = np.float64(v_means2d[c, n, 0])
            vv = np.float64(v_means2d[c, n, 1])
            z2 = z * z
            z3 = z2 * z
            vtx = fx / z * vu
            vty = fy / z * vv
            vtz = -(fx * x * vu + fy * y * vv) / z2 + np.float64(v_depths[c, n])
            vtz += -fx / z2 * vJ[0] - fy / z2 * vJ[4]
            vtz += 2.0 * fx * tx / z3 * vJ[2] + 2.0 * fy * ty / z3 * vJ[5]
            if clamp_x:
                vtz += -fx / z3 * vJ[2] * tx
            else:
                vtx += -fx / z2 * vJ[2]
            if clamp_y:
                vtz += -fy / z3 * vJ[5] * ty
            else:
                vty += -fy / z2 * vJ[5]
            # t = Rv m + tv -> v_m = Rv^T v_t ; Sc = Rv Sigma Rv^T -> v_Sigma = Rv^T v_Sc Rv
            vmx += Rv[0] * vtx + Rv[3] * vty + Rv[6] * vtz
            vmy += Rv[1] * vtx + Rv[4] * vty + Rv[7] * vtz
            vmz += Rv[2] * vtx + Rv[5] * vty + Rv[8] * vtz
            d = _mm33(_mm33(_t33(Rv), vSc), Rv)
            vS = (vS[0] + d[0], vS[1] + d[1], vS[2] + d[2], vS[3] + d[3], vS[4] + d[4], vS[5] + d[5],
                  vS[6] + d[6], vS[7] + d[7], vS[8] + d[8])
        g_means[n, 0] = vmx
        g_means[n, 1] = vmy
        g_means[n, 2] = vmz
        # Sigma = M M^T with M = R diag(s): v_M = (v_Sigma + v_Sigma^T) M
        M = (R[0] * s[0], R[1] * s[1], R[2] * s[2], R[3] * s[0], R[4] * s[1], R[5] * s[2],
             R[6] * s[0], R[7] * s[1], R[8] * s[2])
        vSs = (vS[0] + vS[0], vS[1] + vS[3], vS[2] + vS[6], vS[3] + vS[1], vS[4] + vS[4], vS[5] + vS[7],
               vS[6] + vS[2], vS[7] + vS[5], vS[8] + vS[8])
        vM = _mm33(vSs, M)
        g_scales[n, 0] = (vM[0] * R[0] + vM[3] * R[3] + vM[6] * R[6]) * s[0]
        g_scales[n, 1] = (vM[1] * R[1] + vM[4] * R[4] + vM[7] * R[7]) * s[1]
        g_scales[n, 2] = (vM[2] * R[2] + vM[5] * R[5] + vM[8] * R[8]) * s[2]
        vR = (vM[0] * s[0], vM[1] * s[1], vM[2] * s[2], vM[3] * s[0], vM[4] * s[1], vM[5] * s[2],
              vM[6] * s[0], vM[7] * s[1], vM[8] * s[2])
        inv = 1.0 / max(qn, 1e-12)
        w = np.float64(quats[n, 0]) * inv
        x = np.float64(quats[n, 1]) * inv
        y = np.float64(quats[n, 2]) * inv
        z = np.float64(quats[n, 3]) * inv
        gw = 2.0 * (-z * vR[1] + y * vR[2] + z * vR[3] - x * vR[5] - y * vR[6] + x * vR[7])
        gx = 2.0 * (
            y * vR[1] + z * vR[2] + y * vR[3] - 2.0 * x * vR[4] - w * vR[5] + z * vR[6] + w * vR[7]
            - 2.0 * x * vR[8]
        )
        gy = 2.0 * (
            -2.0 * y * vR[0] + x * vR[1] + w * vR[2] + x * vR[3] + z * vR[5] - w * vR[6] + z * vR[7]
            - 2.0 * y * vR[8]
        )
        gz = 2.0 * (
            -2.0 * z * vR[0] - w * vR[1] + x * vR[2] + w * vR[3] - 2.0 * z * vR[4] + y * vR[5] + x * vR[6]
            + y * vR[7]
        )
        if qn > 1e-12:  # through normalize(q): drop the radial part
            dot = w * gw + x * gx + y * gy + z * gz
            g_quats[n, 0] = (gw - w * dot) * inv
            g_quats[n, 1] = (gx - x * dot) * inv
            g_quats[n, 2] = (gy - y * dot) * inv
            g_quats[n, 3] = (gz - z * dot) * inv


@njit(cache=True)
def _sh_basis(degree, x, y, z, out):
    """Real SH basis (gsplat's constants/signs) at unit direction (x, y, z) into out[:(degree+1)^2]."""
    out[0] = SH_C0
    if degree < 1:
        return
    out[1] = -SH_C1 * y
    out[2] = SH_C1 * z
    out[3] = -SH_C1 * x
    if degree < 2:
        return
    xx = x * x
    yy = y * y
    zz = z * z
    out[4] = SH_C2[0] * x * y
    out[5] = SH_C2[1] * y * z
    out[6] = SH_C2[2] * (2.0 * zz - xx - yy)
    out[7] = SH_C2[3] * x * z
    out[8] = SH_C2[4] * (xx - yy)
    if degree < 3:
        return
    out[9] = SH_C3[0] * y * (3.0 * xx - yy)
    out[10] = SH_C3[1] * x * y * z
    out[11] = SH_C3[2] * y * (4.0 * zz - xx - yy)
    out[12] = SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
    out[13] = SH_C3[4] * x * (4.0 * zz - xx - yy)
    out[14] = SH_C3[5] * z * (xx - yy)
    out[15] = SH_C3[6] * x * (xx - 3.0 * yy)


@njit(cache=True)
def _sh_basis_grad(degree, x, y, z, gx, gy, gz):
    """d basis / d (x, y, z) of the polynomials in _sh_basis (same on the sphere as gsplat's forms)."""
    for k in range((degree + 1) ** 2):
        gx[k] = 0.0
        gy[k] = 0.0
        gz[k] = 0.0
    if degree < 1:
        return
    gy[1] = -SH_C1
    gz[2] = SH_C1
    gx[3] = -SH_C1
    if degree < 2:
        return
    xx = x * x
    yy = y * y
    zz = z * z
    gx[4] = SH_C2[0] * y
    gy[4] = SH_C2[0] * x
    gy[5] = SH_C2[1] * z
    gz[5] = SH_C2[1] * y
    gx[6] = -2.0 * SH_C2[2] * x
    gy[6] = -2.0 * SH_C2[2] * y
    gz[6] = 4.0 * SH_C2[2] * z
    gx[7] = SH_C2[3] * z
    gz[7] = SH_C2[3] * x
    gx[8] = 2.0 * SH_C2[4] * x
    gy[8] = -2.0 * SH_C2[4] * y
    if degree < 3:
        return
    gx[9] = SH_C3[0] * 6.0 * x * y
    gy[9] = SH_C3[0] * (3.0 * xx - 3.0 * yy)
    gx[10] = SH_C3[1] * y * z
    gy[10] = SH_C3[1] * x * z
    gz[10] = SH_C3[1] * x * y
    gx[11] = SH_C3[2] * (-2.0 * x * y)
    gy[11] = SH_C3[2] * (4.0 * zz - xx - 3.0 * yy)
    gz[11] = SH_C3[2] * 8.0 * y * z
    gx[12] = SH_C3[3] * (-6.0 * x * z)
    gy[12] = SH_C3[3] * (-6.0 * y * z)
    gz[12] = SH_C3[3] * (6.0 * zz - 3.0 * xx - 3.0 * yy)
    gx[13] = SH_C3[4] * (4.0 * zz - 3.0 * xx - yy)
    gy[13] = SH_C3[4] * (-2.0 * x * y)
    gz[13] = SH_C3[4] * 8.0 * x * z
    gx[14] = SH_C3[5] * 2.0 * x * z
    gy[14] = SH_C3[5] * (-2.0 * y * z)
    gz[14] = SH_C3[5] * (xx - yy)
    gx[15] = SH_C3[6] * (3.0 * xx - 3.0 * yy)
    gy[15] = SH_C3[6] * (-6.0 * x * y)


@njit(cache=True, nogil=True)
def sh_colors_fwd(lo, hi, degree, sh0, shN, means, campos, radii, out):
    """Colour = max(SH(dir) + 0.5, 0) per camera for Gaussians lo..hi-1: sh0 [N,1,3], shN [N,K-1,3],
    means [N,3], campos [C,3] float64, radii [C,N,2] -> out [C,N,3] (zero-initialized: culled stay 0);
    dir = mean - camera centre, normalized."""
    C = campos.shape[0]
    nb = (degree + 1) ** 2
    basis = np.empty(16)
    for n in range(lo, hi):
        for c in range(C):
            if radii[c, n, 0] <= 0 and radii[c, n, 1] <= 0:
                continue
            dx = np.float64(means[n, 0]) - campos[c, 0]
            dy = np.float64(means[n, 1]) - campos[c, 1]
            dz = np.float64(means[n, 2]) - campos[c, 2]
            inv = 1.0 / max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
            _sh_basis(degree, dx * inv, dy * inv, dz * inv, basis)
            for ch in range(3):
                v = 0.5 + basis[0] * sh0[n, 0, ch]
                for k in range(1, nb):
                    v += basis[k] * shN[n, k - 1, ch]
                out[c, n, ch] = max(v, 0.0)


@njit(cache=True, nogil=True)
def sh_colors_bwd(lo, hi, degree, sh0, shN, means, campos, radii, v_colors, g_sh0, g_shN, g_means):
    """Gradients of sh_colors_fwd for Gaussians lo..hi-1 w.r.t. sh0, shN and means (through the view
    direction), written into g_sh0, g_shN, g_means (uninitialized: every row lo..hi-1 is written here, so
    the zeroing of these large arrays happens on the worker threads)."""
    C = campos.shape[0]
    nb = (degree + 1) ** 2
    basis = np.empty(16)
    gbx = np.empty(16)
    gby = np.empty(16)
    gbz = np.empty(16)
    for n in range(lo, hi):
        g_sh0[n] = 0.0
        g_shN[n] = 0.0
        g_means[n] = 0.0
        for c in range(C):
            if radii[c, n, 0] <= 0 and radii[c, n, 1] <= 0:
                continue
            dx = np.float64(means[n, 0]) - campos[c, 0]
            dy = np.float64(means[n, 1]) - campos[c, 1]
            dz = np.float64(means[n, 2]) - campos[c, 2]
            norm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
            x = dx / norm
            y = dy / norm
            z = dz / norm
            _sh_basis(degree, x, y, z, basis)
            _sh_basis_grad(degree, x, y, z, gbx, gby, gbz)
            vx = 0.0
            vy = 0.0
            vz = 0.0
            for ch in range(3):
                vc = np.float64(v_colors[c, n, ch])
                v = 0.5 + basis[0] * sh0[n, 0, ch]
                for k in range(1, nb):
                    v += basis[k] * shN[n, k - 1, ch]
                if v < 0.0:  # clamp_min(., 0): torch passes the gradient where the input is >= 0
                    continue
                g_sh0[n, 0, ch] += basis[0] * vc
                for k in range(1, nb):
                    coef = shN[n, k - 1, ch]
                    g_shN[n, k - 1, ch] += basis[k] * vc
                    vx += gbx[k] * coef * vc
                    vy += gby[k] * coef * vc
                    vz += gbz[k] * coef * vc
            dot = x * vx + y * vy + z * vz  # through normalize(dir): drop the radial part
            g_means[n, 0] += (vx - x * dot) / norm
            g_means[n, 1] += (vy - y * dot) / norm
            g_means[n, 2] += (vz - z * dot) / norm
