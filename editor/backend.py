"""The editor's one door into the engine for loading, saving, drawing and display conversion.

Panels never import `engine` directly: they call these functions (and `editor.masking`, `editor.jobs`), so a
reader finds in one place every engine call the UI makes. Nothing here optimizes or edits anything; the only
tensor work is turning a scene into what a screen shows (uint8 images, Viser's splat arrays).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class SceneBundle:
    """A scene plus what the UI knows about it: a name, ground-truth parts when the file has them, and its up
    axis (detected on load by engine.io.up.detect_up, changed in the Scene panel)."""

    scene: GaussianScene
    name: str
    part_ids: Tensor | None = None  # [N] int64, index into part_names (bundled scene only)
    part_names: list[str] = field(default_factory=list)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    up_source: str = "default"  # how `up` was found: file / format / geometry / user / default


# ---------------------------------------------------------------------------------------------- files
def readable_extensions() -> list[str]:
    """File endings the scene upload accepts (whatever engine.io reads)."""
    from engine.io import READABLE_EXTENSIONS

    return list(READABLE_EXTENSIONS)


def writable_extensions() -> list[str]:
    from engine.io import WRITABLE_EXTENSIONS

    return list(WRITABLE_EXTENSIONS)


def default_scene(path: Path | None = None) -> SceneBundle:
    """The scene every new session opens: `path` if given, else the bundled default scene."""
    if path is not None:
        return open_scene(path)
    try:
        from assets.default_scene import load_default_scene
    except ImportError:  # TODO(app): drop once assets/default_scene.py lands
        from engine.scene import random_scene

        log.warning("assets.default_scene is missing; showing a random scene")
        return SceneBundle(random_scene(300, seed=0, extent=0.5), "random scene (default asset missing)")
    from assets.default_scene import SCENE_PATH
    from engine.io.up import detect_up

    scene, part_ids, names = load_default_scene()
    guess = detect_up(SCENE_PATH, scene)
    return SceneBundle(scene, "default scene (toy robot)", torch.as_tensor(part_ids).long(), list(names),
                       up=guess.up, up_source=guess.source)


def open_scene(path: Path | str, *, spz_frame: str = "spec") -> SceneBundle:
    """Read any format engine.io knows (`spz_frame`: how an .spz is stored, engine.io.SPZ_FRAMES); errors are
    ValueError/OSError with the file and the problem."""
    from engine.io import load
    from engine.io.up import detect_up

    path = Path(path)
    scene = load(path, spz_frame=spz_frame)
    if len(scene) == 0:
        raise ValueError(f"{path.name}: the file holds no Gaussians")
    guess = detect_up(path, scene)
    return SceneBundle(scene.detach().to("cpu", torch.float32), path.name, up=guess.up, up_source=guess.source)


def save_scene(scene: GaussianScene, path: Path | str, up=None) -> Path:
    """Write `scene` in the format named by the file ending (.ply / .splat / .spz); a .ply records `up`."""
    from engine.io.up import save_with_up

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_with_up(scene, path, up)
    return path


def scene_info(bundle: SceneBundle) -> dict:
    """The facts the Scene panel shows: name, count, SH degree, bounds, up axis."""
    from engine.up import format_up

    scene = bundle.scene
    lo, hi = scene.bounding_box()
    return {
        "name": bundle.name,
        "gaussians": len(scene),
        "sh_degree": scene.sh_degree,
        "bounds_min": [round(float(v), 4) for v in lo],
        "bounds_max": [round(float(v), 4) for v in hi],
        "parts": list(bundle.part_names),
        "up": format_up(bundle.up),
        "up_source": bundle.up_source,
    }


# ---------------------------------------------------------------------------------------------- drawing
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


@torch.no_grad()
def render_view(
    scene: GaussianScene, camera: Cameras, *, mask: Tensor | None = None, tint: bool = False
) -> np.ndarray:
    """One uint8 image [H, W, 3] of `scene` from `camera` (the engine renderer; full SH colour unless tinted)."""
    from engine.render import render

    colors = display_colors(scene, mask) if tint and mask is not None else None
    out = render(scene.detach(), camera[0:1], colors=colors, background=BACKGROUND)
    return to_uint8(out.rgb[0])


class TintedViews:
    """Mask-tinted images of one scene from one camera, re-coloured without re-rendering.

    With tint on, every Gaussian shows its base colour blended toward the tint by its weight, and the image is
    a fixed linear map of those colours: the compositing weights of the view (engine.masks.contrib). Keeping
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
            from engine.masks.contrib import compositing_weights

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


def turntable(scene: GaussianScene, path: Path | str, *, frames: int = 48, size: int = 384, fps: int = 24,
              elevation: float = 20.0, up=(0.0, 0.0, 1.0)) -> Path:
    """An .mp4 orbiting the scene once around its `up` (engine renders, written with imageio's ffmpeg)."""
    import imageio.v2 as imageio

    from engine.camera import framing_radius, orbit_cameras

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


# Web splat viewers (Gradio's Model3D uses gsplat.js) expect the 3DGS capture convention, -y up.
WEB_VIEWER_UP = (0.0, -1.0, 0.0)


def for_web_viewer(scene: GaussianScene, up=(0.0, 0.0, 1.0)) -> GaussianScene:
    """A copy of `scene` turned from its `up` to the -y-up convention of web splat viewers (display only; a
    -y-up capture is not turned at all). View-dependent colour is dropped (degree 0): the web viewer's file
    stays small."""
    from engine.rotate import turn_scene

    scene = scene.detach().to("cpu", torch.float32).with_sh_degree(0)
    return turn_scene(scene, up, WEB_VIEWER_UP)
