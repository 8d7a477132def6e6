"""Pinhole cameras in gsplat's (OpenCV) convention, look-at, and orbit sampling.

Conventions, the same as gsplat's `rasterization`:
- camera axes: x right, y down, z forward (the camera looks along +z);
- `viewmats [C, 4, 4]` map world points to camera coordinates (world-to-camera);
- `Ks [C, 3, 3]` are intrinsics in pixels: u = fx * x / z + cx, v = fy * y / z + cy, with pixel centres at
  integer + 0.5 (pixel (0, 0) covers [0, 1) x [0, 1));
- the world "up" used by look-at and orbits defaults to +z (our default scene and Viser's default);
  captures in the COLMAP convention are usually -y up: pass `up=(0, -1, 0)`. Callers pass the scene's up
  (engine.io.detect_up.detect_up for a file, the user's override; engine/up.py names and parses them).
Azimuth is measured in degrees counter-clockwise around `up` from the +x axis; elevation in degrees
above the plane orthogonal to `up`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Cameras:
    """A batch of C pinhole cameras sharing one image size."""

    viewmats: Tensor  # [C, 4, 4] world-to-camera
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.viewmats.dim() != 3 or tuple(self.viewmats.shape[1:]) != (4, 4):
            raise ValueError(f"viewmats must have shape [C, 4, 4], got {list(self.viewmats.shape)}")
        if self.Ks.dim() != 3 or tuple(self.Ks.shape[1:]) != (3, 3):
            raise ValueError(f"Ks must have shape [C, 3, 3], got {list(self.Ks.shape)}")
        if self.Ks.shape[0] != self.viewmats.shape[0]:
            raise ValueError(f"{self.viewmats.shape[0]} viewmats but {self.Ks.shape[0]} Ks")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if not (torch.isfinite(self.viewmats).all() and torch.isfinite(self.Ks).all()):
            raise ValueError("camera matrices contain NaN/Inf")

    def __len__(self) -> int:
        return int(self.viewmats.shape[0])

    def __getitem__(self, index) -> "Cameras":
        """A sub-batch; an integer index keeps the batch dimension."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.viewmats[index], self.Ks[index], self.width, self.height)

    def to(self, device=None, dtype=None) -> "Cameras":
        return Cameras(self.viewmats.to(device, dtype), self.Ks.to(device, dtype), self.width, self.height)

    @property
    def camtoworlds(self) -> Tensor:  # [C, 4, 4]
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> Tensor:  # [C, 3] camera positions in world space
        return self.camtoworlds[:, :3, 3]

    def with_size(self, width: int, height: int) -> "Cameras":
        """Same views at another resolution (intrinsics rescaled)."""
        sx, sy = width / self.width, height / self.height
        Ks = self.Ks.clone()
        Ks[:, 0, :] *= sx
        Ks[:, 1, :] *= sy
        return Cameras(self.viewmats, Ks, int(width), int(height))

    @staticmethod
    def concat(batches: list["Cameras"]) -> "Cameras":
        first = batches[0]
        if any(b.width != first.width or b.height != first.height for b in batches):
            raise ValueError("cameras of different image sizes cannot be batched")
        return Cameras(
            torch.cat([b.viewmats for b in batches]), torch.cat([b.Ks for b in batches]), first.width, first.height
        )


def intrinsics_from_fov(width: int, height: int, fov_y_deg: float, *, dtype=torch.float32) -> Tensor:
    """K [3, 3] for a vertical field of view in degrees, square pixels, principal point at the centre."""
    if not 0.0 < fov_y_deg < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_y_deg}")
    focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)


def look_at(eye: Tensor, target: Tensor, up: Tensor | tuple = (0.0, 0.0, 1.0)) -> Tensor:
    """World-to-camera [.., 4, 4] for cameras at `eye [.., 3]` looking at `target [.., 3]` (OpenCV axes)."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    up = torch.as_tensor(up, dtype=torch.float64).expand_as(eye)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.cross(forward, up, dim=-1)
    # Looking straight along `up`: any right vector orthogonal to forward will do.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-9
    fallback = torch.cross(forward, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand_as(forward), dim=-1)
    right = torch.nn.functional.normalize(torch.where(degenerate, fallback, right), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    rot = torch.stack([right, down, forward], dim=-2)  # rows: camera axes in world coordinates
    viewmat = torch.zeros(eye.shape[:-1] + (4, 4), dtype=torch.float64)
    viewmat[..., :3, :3] = rot
    viewmat[..., :3, 3] = -(rot @ eye[..., None])[..., 0]
    viewmat[..., 3, 3] = 1.0
    return viewmat.float()


def orbit_positions(
    center: Tensor, radius: float, azimuths_deg: Tensor, elevations_deg: Tensor, up=(0.0, 0.0, 1.0)
) -> Tensor:
    """Camera positions [C, 3] on a sphere around `center` for the given angles."""
    up_t = torch.nn.functional.normalize(torch.as_tensor(up, dtype=torch.float64), dim=0)
    # An orthonormal frame (e1, e2, up); azimuth 0 lies along the world x axis projected off `up`.
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    if abs(float(e1 @ up_t)) > 0.9:
        e1 = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    e1 = torch.nn.functional.normalize(e1 - (e1 @ up_t) * up_t, dim=0)
    e2 = torch.cross(up_t, e1, dim=0)
    az = torch.deg2rad(torch.as_tensor(azimuths_deg, dtype=torch.float64))
    el = torch.deg2rad(torch.as_tensor(elevations_deg, dtype=torch.float64))
    direction = (
        torch.cos(el)[:, None] * (torch.cos(az)[:, None] * e1 + torch.sin(az)[:, None] * e2)
        + torch.sin(el)[:, None] * up_t
    )
    return torch.as_tensor(center, dtype=torch.float64) + radius * direction


def orbit_cameras(
    center: Tensor,  # [3]
    radius: float,
    azimuths_deg,
    elevations_deg,
    *,
    width: int,
    height: int,
    fov_y_deg: float = 45.0,
    up=(0.0, 0.0, 1.0),
) -> Cameras:
    """Cameras on an orbit around `center`, all looking at it."""
    az = torch.as_tensor(azimuths_deg, dtype=torch.float64).flatten()
    el = torch.as_tensor(elevations_deg, dtype=torch.float64).flatten()
    if el.numel() == 1:
        el = el.expand_as(az)
    eyes = orbit_positions(center, radius, az, el, up)
    target = torch.as_tensor(center, dtype=torch.float64).expand_as(eyes)
    viewmats = look_at(eyes, target, up)
    K = intrinsics_from_fov(width, height, fov_y_deg)
    return Cameras(viewmats, K.expand(len(az), 3, 3).clone(), int(width), int(height))


def framing_radius(half_extent: float, fov_y_deg: float, margin: float = 1.15) -> float:
    """Distance at which a sphere of radius `half_extent` fills the vertical field of view (times margin)."""
    return margin * half_extent / math.sin(math.radians(fov_y_deg) / 2)


def sample_orbit_cameras(
    num: int,
    center: Tensor,
    *,
    radius_range: tuple[float, float],
    azimuth_range: tuple[float, float] = (-180.0, 180.0),
    elevation_range: tuple[float, float] = (-10.0, 60.0),
    width: int,
    height: int,
    fov_y_deg: float = 45.0,
    up=(0.0, 0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Cameras:
    """`num` random orbit cameras: azimuth/elevation/radius uniform in their ranges (elevation uniform on
    the sphere's band, so poles are not oversampled)."""
    u = torch.rand(num, 3, generator=generator, dtype=torch.float64)
    az = azimuth_range[0] + u[:, 0] * (azimuth_range[1] - azimuth_range[0])
    s0, s1 = (math.sin(math.radians(e)) for e in elevation_range)
    el = torch.rad2deg(torch.asin(s0 + u[:, 1] * (s1 - s0)))
    radius = radius_range[0] + u[:, 2] * (radius_range[1] - radius_range[0])
    eyes = torch.stack(
        [orbit_positions(center, float(r), a[None], e[None], up)[0] for r, a, e in zip(radius, az, el)]
    )
    viewmats = look_at(eyes, torch.as_tensor(center, dtype=torch.float64).expand_as(eyes), up)
    K = intrinsics_from_fov(width, height, fov_y_deg)
    return Cameras(viewmats, K.expand(num, 3, 3).clone(), int(width), int(height))
