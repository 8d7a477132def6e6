"""Scene files as the editor holds them: a scene plus its name, parts and up axis (SceneBundle); open, save,
describe, and the copy a web splat viewer shows.

The engine reads and writes the formats (engine.io); this module adds what the UI knows about a file.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from engine.scene import GaussianScene

log = logging.getLogger(__name__)


@dataclass
class SceneBundle:
    """A scene plus what the UI knows about it: a name, ground-truth parts when the file has them, and its up
    axis (detected on load by engine.io.detect_up.detect_up, changed in the Scene panel)."""

    scene: GaussianScene
    name: str
    part_ids: Tensor | None = None  # [N] int64, index into part_names (bundled scene only)
    part_names: list[str] = field(default_factory=list)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    up_source: str = "default"  # how `up` was found: file / format / geometry / user / default

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
    from engine.io.detect_up import detect_up

    scene, part_ids, names = load_default_scene()
    guess = detect_up(SCENE_PATH, scene)
    return SceneBundle(scene, "default scene (toy robot)", torch.as_tensor(part_ids).long(), list(names),
                       up=guess.up, up_source=guess.source)


def open_scene(path: Path | str, *, spz_frame: str = "raw") -> SceneBundle:
    """Read any format engine.io knows (`spz_frame`: how an .spz is stored, engine.io.SPZ_FRAMES); errors are
    ValueError/OSError with the file and the problem."""
    from engine.io import load
    from engine.io.detect_up import detect_up

    path = Path(path)
    scene = load(path, spz_frame=spz_frame)
    if len(scene) == 0:
        raise ValueError(f"{path.name}: the file holds no Gaussians")
    guess = detect_up(path, scene)
    return SceneBundle(scene.detach().to("cpu", torch.float32), path.name, up=guess.up, up_source=guess.source)


def save_scene(scene: GaussianScene, path: Path | str, up=None) -> Path:
    """Write `scene` in the format named by the file ending (.ply / .splat / .spz); a .ply records `up`."""
    from engine.io.detect_up import save_with_up

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


# Web splat viewers (Gradio's Model3D uses gsplat.js) expect the 3DGS capture convention, -y up.
WEB_VIEWER_UP = (0.0, -1.0, 0.0)
# Gradio's splat viewer cannot be pointed anywhere: it orbits the origin from 5 units away with a view about 24°
# tall (fx = fy = 1132 px on a 480 px canvas), so the display copy is moved and sized to fill that view: its
# bounding sphere (1% outliers ignored) centred on the origin with this radius.
WEB_VIEWER_RADIUS = 0.9


def for_web_viewer(scene: GaussianScene, up=(0.0, 0.0, 1.0), *, framed: bool = True) -> GaussianScene:
    """A display copy of `scene` turned from its `up` to the -y-up convention of web splat viewers (a -y-up
    capture is not turned at all) and, when `framed`, centred on the origin and scaled to WEB_VIEWER_RADIUS
    (the viewer looks at the origin; shapes are kept: the Gaussians' sizes scale with their positions).
    View-dependent colour is dropped (degree 0): the web viewer's file stays small."""
    from engine.rotate import turn_scene

    scene = turn_scene(scene.detach().to("cpu", torch.float32).with_sh_degree(0), up, WEB_VIEWER_UP)
    if not framed or len(scene) == 0:
        return scene
    lo, hi = scene.bounding_box(quantile=0.01 if len(scene) > 200 else 0.0)
    half = max(float((hi - lo).norm()) / 2, 1e-6)
    factor = WEB_VIEWER_RADIUS / half
    return scene.replace(means=(scene.means - (lo + hi) / 2) * factor, scales=scene.scales + math.log(factor))
