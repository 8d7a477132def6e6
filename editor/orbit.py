"""OrbitView: the streamed viewer's camera as four numbers the orbit buttons and sliders change.

The page (Space mode, share mode, and the "Render" tab locally) cannot move a camera with the mouse, so the
camera is an orbit around a target: azimuth / elevation in degrees (the conventions of engine.camera, around
the scene's up axis) and a distance. `cameras()` turns it into engine Cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FOV_Y_DEG = 50.0


@dataclass(frozen=True)
class OrbitView:
    azimuth: float = 30.0  # degrees counter-clockwise around `up` from +x
    elevation: float = 20.0  # degrees above the plane orthogonal to `up`
    radius: float = 3.0  # distance from the target
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov_y: float = FOV_Y_DEG
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)  # the scene's up axis (SceneBundle.up)

    @classmethod
    def framing(cls, lo, hi, *, azimuth: float = 30.0, elevation: float = 20.0, up=(0.0, 0.0, 1.0)) -> "OrbitView":
        """A view that looks at the centre of the box [lo, hi] from far enough to see all of it, upright for `up`."""
        from engine.camera import framing_radius

        lo = [float(v) for v in lo]
        hi = [float(v) for v in hi]
        center = tuple((a + b) / 2 for a, b in zip(lo, hi))
        half = max(1e-3, 0.5 * sum((b - a) ** 2 for a, b in zip(lo, hi)) ** 0.5)
        return cls(azimuth, elevation, framing_radius(half, FOV_Y_DEG), center, up=tuple(float(c) for c in up))

    def rotated(self, d_azimuth: float = 0.0, d_elevation: float = 0.0) -> "OrbitView":
        elevation = max(-89.0, min(89.0, self.elevation + d_elevation))
        return replace(self, azimuth=(self.azimuth + d_azimuth + 180.0) % 360.0 - 180.0, elevation=elevation)

    def zoomed(self, factor: float) -> "OrbitView":
        """factor < 1 moves closer."""
        if factor <= 0:
            raise ValueError(f"zoom factor must be positive, got {factor}")
        return replace(self, radius=self.radius * factor)

    def with_angles(self, azimuth: float, elevation: float) -> "OrbitView":
        return replace(self, azimuth=float(azimuth), elevation=max(-89.0, min(89.0, float(elevation))))

    def cameras(self, width: int, height: int):
        """engine.camera.Cameras (one camera) for this view at the given image size."""
        import torch

        from engine.camera import orbit_cameras

        return orbit_cameras(
            torch.tensor(self.target), self.radius, [self.azimuth], [self.elevation],
            width=width, height=height, fov_y_deg=self.fov_y, up=self.up,
        )
