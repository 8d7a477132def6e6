"""The bundled default scene (a toy robot) and its ground-truth parts, as files next to this module.

    scene, part_ids, names = load_default_scene()

`part_ids[i]` is the index into `names` of the part Gaussian i belongs to (the ground truth that mask
accuracy is measured against). The files are built by assets/build_default_scene.py; rebuild them with
`python -m assets.build_default_scene` after changing the builder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ASSET_DIR = Path(__file__).resolve().parent
SCENE_PATH = ASSET_DIR / "default_scene.ply"
PART_IDS_PATH = ASSET_DIR / "default_scene_parts.npy"
PARTS_JSON_PATH = ASSET_DIR / "default_scene_parts.json"


def load_default_scene_info() -> dict:
    """The metadata beside the scene: {"names": [...], "up": [0, 0, 1], "front": [1, 0, 0], ...}."""
    return json.loads(PARTS_JSON_PATH.read_text())


def load_default_scene():
    """(GaussianScene, part_ids int32 [N], part names list) of the bundled toy robot; world up is +z."""
    from engine.io import load

    scene = load(SCENE_PATH)
    part_ids = np.load(PART_IDS_PATH)
    names = list(load_default_scene_info()["names"])
    if part_ids.shape != (len(scene),):
        raise ValueError(
            f"{PART_IDS_PATH.name}: {part_ids.shape[0]} part ids for {len(scene)} Gaussians in {SCENE_PATH.name}; "
            "rebuild with `python -m assets.build_default_scene`"
        )
    if part_ids.size and (part_ids.min() < 0 or part_ids.max() >= len(names)):
        raise ValueError(f"{PART_IDS_PATH.name}: part ids outside 0..{len(names) - 1}")
    return scene, part_ids, names
