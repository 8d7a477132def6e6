"""Selection gestures in a view, independent of where they came from (Viser canvas or the streamed image).

A gesture carries the camera it was made in, so the mask tools (pick, brush, rectangle, SAM) can project the
scene into exactly the image the user saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ViewClick:
    camera: object  # engine.camera.Cameras, one camera, at the size of the clicked image
    pixel: tuple[float, float]  # (u, v) in pixels of that image, (0, 0) = top-left corner
    ray_origin: np.ndarray  # [3] world
    ray_direction: np.ndarray  # [3] world, unit length


@dataclass(frozen=True)
class ViewRect:
    camera: object  # engine.camera.Cameras, one camera
    pixel_min: tuple[float, float]  # (u, v) top-left corner in pixels
    pixel_max: tuple[float, float]  # (u, v) bottom-right corner in pixels


def click_from_pixel(camera, u: float, v: float) -> ViewClick:
    """The click at pixel (u, v) of `camera`'s image, with its world ray (pinhole back-projection)."""
    viewmat = camera.viewmats[0].double().cpu().numpy()
    K = camera.Ks[0].double().cpu().numpy()
    rot, t = viewmat[:3, :3], viewmat[:3, 3]
    d_cam = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
    d_world = rot.T @ d_cam
    origin = -rot.T @ t
    return ViewClick(camera, (float(u), float(v)), origin, d_world / np.linalg.norm(d_world))
