"""Multi-view 2D masks: the in-memory batch (`MaskViews`) and the folder format read by `python -m engine mask`.

Folder layout: `cameras.json` is a JSON list with one entry per view,
    {"file": "view_000.png", "viewmat": 4x4 world-to-camera (OpenCV axes), "K": 3x3 pixels,
     "width": W, "height": H}
and each `file` (relative to the folder) is an 8-bit single-channel PNG, 0 = outside, 255 = inside (values
>= 128 count as inside; RGB images are read as their luminance). Views of different sizes are allowed: they
are grouped into one `MaskViews` per size.

Every problem is reported as a `ViewsError` naming the file (and the entry) and what is wrong, before
anything is computed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..camera import Cameras

CAMERAS_FILE = "cameras.json"
EIGHT_BIT_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")


class ViewsError(ValueError):
    """A views folder (cameras.json or a mask image) is missing, unreadable or inconsistent."""


@dataclass
class MaskViews:
    """C views of one image size with P soft 2D masks each (P parts; 1 for a single selection)."""

    cameras: Cameras
    masks: Tensor  # [C, H, W, P] float in [0, 1]

    def __post_init__(self) -> None:
        if self.masks.dim() == 3:
            self.masks = self.masks[..., None]
        expected = (len(self.cameras), self.cameras.height, self.cameras.width)
        if self.masks.dim() != 4 or tuple(self.masks.shape[:3]) != expected:
            raise ValueError(f"masks must be [C, H, W, P] with C, H, W = {expected}, got {list(self.masks.shape)}")
        self.masks = self.masks.float()

    @property
    def num_parts(self) -> int:
        return int(self.masks.shape[-1])

    def __len__(self) -> int:
        return len(self.cameras)


def as_view_list(views: "MaskViews | list[MaskViews] | tuple[MaskViews, ...]") -> list[MaskViews]:
    """Accept one batch or several (of different image sizes); check they agree on the number of parts."""
    groups = [views] if isinstance(views, MaskViews) else list(views)
    if not groups:
        raise ValueError("no views given")
    parts = {g.num_parts for g in groups}
    if len(parts) != 1:
        raise ValueError(f"all view batches must have the same number of mask channels, got {sorted(parts)}")
    return groups


# ---------------------------------------------------------------------------------------------------- reading
def read_views(folder: str | Path) -> list[MaskViews]:
    """Read a views folder; one `MaskViews` per image size, in the order sizes first appear."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ViewsError(f"views folder {folder} does not exist or is not a directory")
    entries = _read_camera_entries(folder / CAMERAS_FILE)
    by_size: dict[tuple[int, int], tuple[list, list, list]] = {}
    for i, entry in enumerate(entries):
        viewmat, K, width, height, image_path = _parse_entry(folder, i, entry)
        mask = _read_mask(image_path, width, height, i)
        vms, ks, ms = by_size.setdefault((width, height), ([], [], []))
        vms.append(viewmat)
        ks.append(K)
        ms.append(mask)
    groups = []
    for (width, height), (vms, ks, ms) in by_size.items():
        cams = Cameras(torch.stack(vms), torch.stack(ks), width, height)
        groups.append(MaskViews(cams, torch.stack(ms)[..., None]))
    return groups


def _read_camera_entries(path: Path) -> list:
    if not path.is_file():
        raise ViewsError(f"{path} is missing: a views folder needs a {CAMERAS_FILE} listing the cameras")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ViewsError(f"{path} is not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ViewsError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(entries, list):
        raise ViewsError(f"{path} must hold a JSON list of camera entries, got {type(entries).__name__}")
    if not entries:
        raise ViewsError(f"{path} lists no cameras")
    return entries


def _parse_entry(folder: Path, i: int, entry) -> tuple[Tensor, Tensor, int, int, Path]:
    where = f"{folder / CAMERAS_FILE} entry {i}"
    if not isinstance(entry, dict):
        raise ViewsError(f"{where} must be an object with file, viewmat, K, width, height")
    missing = [k for k in ("file", "viewmat", "K", "width", "height") if k not in entry]
    if missing:
        raise ViewsError(f"{where} is missing {', '.join(missing)}")
    if not isinstance(entry["file"], str) or not entry["file"]:
        raise ViewsError(f"{where}: 'file' must be a non-empty string")
    width, height = entry["width"], entry["height"]
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ViewsError(f"{where}: '{name}' must be a positive integer, got {value!r}")
    viewmat = _matrix(entry["viewmat"], (4, 4), f"{where}: 'viewmat'")
    K = _matrix(entry["K"], (3, 3), f"{where}: 'K'")
    rot = viewmat[:3, :3].double()
    if (rot @ rot.T - torch.eye(3, dtype=torch.float64)).abs().max() > 1e-3 or torch.linalg.det(rot) < 0:
        raise ViewsError(f"{where}: 'viewmat' rotation part is not a rotation (world-to-camera, OpenCV axes)")
    if (viewmat[3] - torch.tensor([0.0, 0.0, 0.0, 1.0])).abs().max() > 1e-6:
        raise ViewsError(f"{where}: 'viewmat' last row must be [0, 0, 0, 1]")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or (K[2] - torch.tensor([0.0, 0.0, 1.0])).abs().max() > 1e-6:
        raise ViewsError(f"{where}: 'K' must have positive focal lengths and last row [0, 0, 1]")
    return viewmat, K, width, height, folder / entry["file"]


def _matrix(value, shape: tuple[int, int], where: str) -> Tensor:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ViewsError(f"{where} must be a {shape[0]}x{shape[1]} list of numbers") from None
    if array.shape != shape:
        raise ViewsError(f"{where} must be {shape[0]}x{shape[1]}, got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ViewsError(f"{where} contains NaN or infinite values")
    return torch.from_numpy(array).float()


def _read_mask(path: Path, width: int, height: int, i: int) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ViewsError(f"mask image {path} (camera entry {i}) does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            size, mode = image.size, image.mode
            if mode not in EIGHT_BIT_MODES:
                raise ViewsError(f"mask image {path} (camera entry {i}) has pixel mode {mode}; expected 8-bit")
            array = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ViewsError(f"mask image {path} (camera entry {i}) cannot be read: {exc}") from None
    if size != (width, height):
        raise ViewsError(
            f"mask image {path} is {size[0]}x{size[1]} but camera entry {i} says {width}x{height}"
        )
    return torch.from_numpy((array >= 128).astype(np.float32))


# ---------------------------------------------------------------------------------------------------- writing
def write_views(folder: str | Path, views: "MaskViews | list[MaskViews]", *, part: int = 0, prefix: str = "view") -> Path:
    """Write one mask channel of `views` (one batch or several) as a views folder: cameras.json + PNGs
    thresholded at 0.5."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for group in as_view_list(views):
        for c in range(len(group)):
            name = f"{prefix}_{len(entries):03d}.png"
            mask = (group.masks[c, :, :, part] >= 0.5).cpu().numpy().astype(np.uint8) * 255
            Image.fromarray(mask, mode="L").save(folder / name)
            entries.append({
                "file": name,
                "viewmat": _as_list(group.cameras.viewmats[c]),
                "K": _as_list(group.cameras.Ks[c]),
                "width": int(group.cameras.width),
                "height": int(group.cameras.height),
            })
    (folder / CAMERAS_FILE).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return folder


def _as_list(matrix: Tensor) -> list:
    return [[float(v) if math.isfinite(float(v)) else 0.0 for v in row] for row in matrix.detach().cpu().tolist()]
