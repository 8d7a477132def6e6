"""Random and evenly spaced cameras around what a loop optimizes: an edit's part or a generated object.

Both loops frame a set of points the same way: the sphere around a centre that holds 98% of them (a few
stray Gaussians do not push the cameras back), padded by twice the typical Gaussian size, and the camera
distance at which that sphere fills the view. Each job picks its own centre and points (an edit: the
mask-weighted middle of the part, plus its region boxes; a generation: the middle of the object's bounding
box) and passes plain numbers here, never its config, so this module depends on no job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..camera import Cameras, framing_radius, orbit_cameras, sample_orbit_cameras


@dataclass(frozen=True)
class Orbit:
    """Cameras looking at `center` from distances that frame a sphere of `half_extent` around it."""

    center: Tensor  # [3] float64, on the CPU
    half_extent: float  # radius (world units) of the sphere around `center` that holds what is framed
    radius: float  # camera distance at which that sphere fills the view
    fov_y_deg: float
    elevation_range: tuple[float, float]  # degrees above the plane orthogonal to `up`
    radius_range: tuple[float, float]  # camera distances, as multiples of `radius`
    up: tuple[float, float, float]
    resolution: int  # image size (square) of `sample` and `ring` unless they are given another

    @classmethod
    def around(
        cls,
        points: Tensor,  # [P, 3] float64: what must be in view
        center: Tensor,  # [3] float64, on the points' device
        sizes: Tensor,  # [S]: the largest axis of each framed Gaussian (their median pads the sphere)
        *,
        fov_y_deg: float,
        elevation_range: tuple[float, float],
        radius_range: tuple[float, float],
        up: tuple[float, float, float],
        resolution: int,
    ) -> "Orbit":
        """The orbit whose sphere reaches the farthest of 98% of `points` from `center` (all of them when there
        are 20 or fewer), padded by twice the median of `sizes`."""
        dist = (points - center).norm(dim=-1)
        reach = float(torch.quantile(dist, 0.98)) if dist.numel() > 20 else float(dist.max())
        size = float(sizes.double().median()) if sizes.numel() else 0.0
        half_extent = max(reach + 2 * size, 1e-3)
        return cls(center.cpu(), half_extent, framing_radius(half_extent, fov_y_deg), fov_y_deg,
                   tuple(elevation_range), tuple(radius_range), tuple(up), resolution)

    def sample(self, num: int, generator: torch.Generator, *, resolution: int | None = None) -> Cameras:
        """`num` random views: elevation and distance uniform in their ranges, azimuth uniform."""
        res = resolution or self.resolution
        lo, hi = self.radius_range
        return sample_orbit_cameras(
            num, self.center, radius_range=(lo * self.radius, hi * self.radius),
            elevation_range=self.elevation_range, width=res, height=res,
            fov_y_deg=self.fov_y_deg, up=self.up, generator=generator,
        )

    def at(self, azimuth: float, elevation: float, *, resolution: int | None = None) -> Cameras:
        """One view from the given angles (degrees, engine.camera's conventions around `up`) at the ring's
        distance: a preview seen the way the user looks at the scene, framed on what this orbit frames."""
        res = resolution or self.resolution
        dist = self.radius * sum(self.radius_range) / 2
        return orbit_cameras(self.center, dist, [float(azimuth)], [float(elevation)], width=res, height=res,
                             fov_y_deg=self.fov_y_deg, up=self.up)

    def ring(self, num: int, *, resolution: int | None = None, offset_deg: float = 0.0) -> Cameras:
        """`num` evenly spaced views at mid elevation and a middle distance (previews, evaluation views)."""
        res = resolution or self.resolution
        az = torch.arange(num, dtype=torch.float64) * (360.0 / num) + offset_deg
        el = torch.full((num,), sum(self.elevation_range) / 2, dtype=torch.float64)
        dist = self.radius * sum(self.radius_range) / 2
        return orbit_cameras(self.center, dist, az, el, width=res, height=res, fov_y_deg=self.fov_y_deg, up=self.up)
