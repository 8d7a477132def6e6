"""Drawing for the screen: a scene turned into what a page shows — uint8 images from the engine's CPU renderer,
mask-tinted colours, Viser's splat arrays, a turntable video.

Nothing here optimizes anything; these are display renders on the UI's threads (the engine worker owns the
device and every job).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.camera import Cameras, intrinsics_from_fov
from engine.render.images import to_uint8
from engine.scene import GaussianScene

log = logging.getLogger(__name__)

# Colour of the mask tint and how strongly it replaces the colour: a saturated magenta, the colour least likely
# to be taken for an edit's result (an orange-red tint looked like a red edit).
TINT_RGB = (1.0, 0.0, 1.0)
TINT_STRENGTH = 0.6
BACKGROUND = (1.0, 1.0, 1.0)

def camera_from_pose(
    wxyz, position, fov_y_rad: float, width: int, height: int  # viser's camera: R_world_camera, OpenCV axes
) -> Cameras:
    """Cameras (one) from a pose in Viser's convention (camera-to-world rotation + position, OpenCV axes)."""
    w, x, y, z = (float(v) for v in wxyz)
    rot = torch.tensor(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ],
        dtype=torch.float64,
    )
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = rot.T
    viewmat[:3, 3] = -rot.T @ torch.as_tensor(np.asarray(position, dtype=np.float64))
    K = intrinsics_from_fov(width, height, float(np.degrees(fov_y_rad)))
    return Cameras(viewmat[None].float(), K[None], int(width), int(height))


def display_colors(scene: GaussianScene, mask: Tensor | None) -> Tensor:
    """Base colours [N, 3] with the mask drawn as a tint (weight w blends TINT_STRENGTH*w toward TINT_RGB)."""
    rgb = scene.base_colors().detach().clamp(0.0, 1.0)
    if mask is None:
        return rgb
    w = (mask.detach().to(rgb).clamp(0.0, 1.0) * TINT_STRENGTH)[:, None]
    return rgb * (1 - w) + torch.tensor(TINT_RGB, dtype=rgb.dtype) * w


def render_view(
    scene: GaussianScene, camera: Cameras, *, mask: Tensor | None = None, tint: bool = False
) -> np.ndarray:
    """One uint8 image [H, W, 3] of `scene` from `camera` (the engine renderer; full SH colour unless tinted)."""
    from engine.render.images import picture

    colors = display_colors(scene, mask) if tint and mask is not None else None
    return picture(scene, camera, colors=colors, background=BACKGROUND)


class TintedViews:
    """Mask-tinted images of one scene from one camera, re-coloured without re-rendering.

    With tint on, every Gaussian shows its base colour blended toward the tint by its weight, and the image is
    a fixed linear map of those colours: the compositing weights of the view (engine.masks.compositing). Keeping
    that map for the current (scene, camera) turns a mask change into one sparse product (~20 ms for 150k
    Gaussians) instead of a full render (~0.3-1 s on a CPU). `prepare` builds the map (call it off the
    request path); `image` returns None until it is ready for exactly that scene and camera.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key = None  # (scene, viewmat bytes, K bytes, width, height)
        self._weights = None
        self._building = None

    @staticmethod
    def _key_of(scene: GaussianScene, camera: Cameras):
        return (scene, camera.viewmats.numpy().tobytes(), camera.Ks.numpy().tobytes(), camera.width,
                camera.height)

    @staticmethod
    def _same(a, b) -> bool:  # the scene by identity (it is immutable), the camera by value
        return a is not None and b is not None and a[0] is b[0] and a[1:] == b[1:]

    def image(self, scene: GaussianScene, camera: Cameras, mask: Tensor | None) -> np.ndarray | None:
        with self._lock:
            weights = self._weights if self._same(self._key, self._key_of(scene, camera)) else None
        if weights is None:
            return None
        with torch.no_grad():
            rgb = weights.render(display_colors(scene, mask))[0]
            alpha = weights.alpha()[0][..., None]
            return to_uint8(rgb + torch.tensor(BACKGROUND) * (1.0 - alpha))

    def prepare(self, scene: GaussianScene, camera: Cameras) -> None:
        """Build the map for (scene, camera) on a helper thread, unless it is built or being built."""
        key = self._key_of(scene, camera)
        with self._lock:
            if self._same(self._key, key) or self._same(self._building, key):
                return
            self._building = key

        def build() -> None:
            from engine.masks.compositing import compositing_weights

            try:
                with torch.no_grad():
                    weights = compositing_weights(scene.detach(), camera[0:1])
            except Exception:  # noqa: BLE001 - the plain render path still works
                log.exception("building the tint map failed")
                weights = None
            with self._lock:
                if self._building is key:
                    self._building = None
                    if weights is not None:
                        self._key, self._weights = key, weights

        threading.Thread(target=build, name="tint-map", daemon=True).start()


@dataclass
class SplatArrays:
    """What viser's add_gaussian_splats takes, as numpy float32."""

    centers: np.ndarray  # [N, 3]
    covariances: np.ndarray  # [N, 3, 3]
    rgbs: np.ndarray  # [N, 3] in [0, 1]
    opacities: np.ndarray  # [N, 1] in [0, 1]


@torch.no_grad()
def splat_arrays(scene: GaussianScene, mask: Tensor | None = None, *, tint: bool = False) -> SplatArrays:
    """Client-side splats: world covariances, base colour (optionally mask-tinted), activated opacity."""
    from engine.render.projection import covariances_3d

    scene = scene.detach().to("cpu", torch.float32)
    rgb = display_colors(scene, mask if tint else None)
    return SplatArrays(
        centers=scene.means.numpy().astype(np.float32),
        covariances=covariances_3d(scene.quats, scene.scales).numpy().astype(np.float32),
        rgbs=rgb.numpy().astype(np.float32),
        opacities=scene.activated_opacities()[:, None].numpy().astype(np.float32),
    )


def hide_gaussians(scene: GaussianScene, hidden: Tensor) -> GaussianScene:
    """Display copy of `scene` whose `hidden [N] bool` Gaussians are fully transparent (indices unchanged)."""
    if not bool(hidden.any()):
        return scene
    opacities = torch.where(hidden.to(scene.device), torch.full_like(scene.opacities, -30.0), scene.opacities)
    return scene.replace(opacities=opacities)


# A turntable's bounds: seconds, frames per second, size (square, pixels; a multiple of the codec's 16-pixel block)
TURNTABLE_SECONDS = (0.5, 30.0)
TURNTABLE_FPS = (6, 60)
TURNTABLE_SIZE = (128, 1920)


def turntable_frames(seconds: float, fps: int, size: int) -> int:
    """Frames of a turntable of `seconds` at `fps` frames per second and `size`² pixels; ValueError naming the
    bound otherwise (checked before anything is rendered: every frame is an engine render on this machine)."""
    checks = (("length", seconds, TURNTABLE_SECONDS, " s"), ("frames per second", fps, TURNTABLE_FPS, ""),
              ("size", size, TURNTABLE_SIZE, " px"))
    for name, value, (lo, hi), unit in checks:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"turntable {name} must be between {lo:g}{unit} and {hi:g}{unit}, got {value!r}")
    if int(fps) != fps or int(size) != size:
        raise ValueError(f"frames per second and size must be whole numbers, got {fps!r} and {size!r}")
    if int(size) % 16:
        raise ValueError(f"turntable size must be a multiple of 16 px (the video codec's block), got {size:g}: "
                         f"try {16 * round(size / 16):g}")
    return max(2, round(float(seconds) * int(fps)))


def turntable(scene: GaussianScene, path: Path | str, *, frames: int = 48, size: int = 384, fps: int = 24,
              elevation: float = 20.0, up=(0.0, 0.0, 1.0)) -> Path:
    """An .mp4 orbiting the scene once around its `up` (engine renders, written with imageio's ffmpeg);
    `frames` frames of `size`² pixels, played at `fps` (turntable_frames checks what a user asks for)."""
    import imageio.v2 as imageio

    from engine.camera import framing_radius, orbit_cameras

    if frames < 2 or fps < 1 or size < 16 or size % 16:
        raise ValueError(f"a turntable needs >= 2 frames, fps >= 1 and a size that is a multiple of 16 px; got "
                         f"{frames} frames, {fps} fps, {size} px")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = scene.bounding_box(quantile=0.01 if len(scene) > 200 else 0.0)
    center = (lo + hi) / 2
    radius = framing_radius(float((hi - lo).norm()) / 2, 45.0)
    azimuths = torch.linspace(0.0, 360.0, frames + 1)[:-1]
    cams = orbit_cameras(center, radius, azimuths, [elevation], width=size, height=size, fov_y_deg=45.0, up=up)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
        for i in range(frames):
            writer.append_data(render_view(scene, cams[i]))
    return path
