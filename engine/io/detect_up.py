"""Which way is up in a scene file: `detect_up(path)`, and the PLY header comment that records it.

The rule, first match wins:

1. **The file says so.** A .ply header comment `up X Y Z` (what `save_with_up` writes, e.g.
   `comment up 0 0 1`; axis names such as `comment up -y` are read too). Other formats have no place for it.
   The bundled robot carries `comment up 0 0 1`.
2. **The format's capture convention.** 3DGS .ply files (INRIA layout), antimatter15 .splat, SuperSplat /
   PlayCanvas .compressed.ply and SOG, and mkkellogg .ksplat files come from COLMAP-style captures (OpenCV
   camera axes, the first camera upright) or are converted from them keeping the frame: -y up. Niantic .spz
   files as SuperSplat / splat-transform write them hold the .ply frame (engine.io.spz's default reading), so
   -y up too. glTF
   (.glb/.gltf) is +y up by its specification, and OBJ by the habit of the tools that write it (Blender,
   Maya); STL (3D printing) is +z up.
3. **Geometry**, for the rest (.off, mesh / point-cloud .ply, .pcd, .xyz): `engine.up.up_from_geometry`, the
   thinnest axis pointing away from the denser side.

`save_with_up(scene, path, up)` writes a scene file recording its up where the format can (.ply).
`source` says which step decided ("file", "format", "geometry"), so the UI and the CLI can say how sure it is.
A wrong guess is fixed with `--up` or the Scene panel's up control.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..up import NEG_Y_UP, Up, format_up, normalize_up, parse_up, up_from_geometry

UP_COMMENT = "up"  # keyword of the header comment: `comment up X Y Z`
FORMAT_UP: dict[str, Up] = {"ply": NEG_Y_UP, "compressed_ply": NEG_Y_UP, "splat": NEG_Y_UP, "spz": NEG_Y_UP,
                            "sog": NEG_Y_UP, "ksplat": NEG_Y_UP}
SUFFIX_UP: dict[str, Up] = {".glb": (0.0, 1.0, 0.0), ".gltf": (0.0, 1.0, 0.0), ".obj": (0.0, 1.0, 0.0),
                            ".stl": (0.0, 0.0, 1.0)}


@dataclass(frozen=True)
class UpGuess:
    """A scene file's up axis and how it was found: "file" (its own metadata), "format" or "geometry"."""

    up: Up
    source: str

    def describe(self) -> str:
        return f"{format_up(self.up)} (from the {'file' if self.source == 'file' else self.source})"


def up_comment(up) -> str:
    """The header comment text (without `comment `) recording `up`, e.g. 'up 0 0 1'."""
    return UP_COMMENT + " " + " ".join(f"{c:.9g}" for c in normalize_up(up))


def up_from_comments(comments) -> Up | None:
    """The up a PLY header's comments record (the last `up ...` comment), or None."""
    found = None
    for text in comments:
        words = str(text).split()
        if len(words) >= 2 and words[0].lower() == UP_COMMENT:
            try:
                found = parse_up(",".join(words[1:]) if len(words) == 4 else words[1])
            except ValueError:
                continue  # someone else's "up ..." comment: not ours to read
    return found


def detect_up(path: str | os.PathLike, scene=None) -> UpGuess:
    """The up axis of the scene file at `path` by the rule above. `scene` (the loaded file) is only needed for
    the geometry step; without it the file is loaded when that step is reached."""
    from . import MESH, POINT_CLOUD, detect_format, load

    p = Path(path)
    fmt = detect_format(p)
    if p.name.lower().endswith(".ply"):
        from .ply_header import read_ply_header

        recorded = up_from_comments(read_ply_header(p).comments)
        if recorded is not None:
            return UpGuess(recorded, "file")
    if fmt in FORMAT_UP:
        return UpGuess(FORMAT_UP[fmt], "format")
    suffix = p.suffix.lower()
    if fmt in (MESH, POINT_CLOUD) and suffix in SUFFIX_UP:
        return UpGuess(SUFFIX_UP[suffix], "format")
    scene = scene if scene is not None else load(p)
    return UpGuess(up_from_geometry(scene.means), "geometry")


def save_with_up(scene, path: str | os.PathLike, up=None) -> None:
    """`engine.io.save(scene, path)`, recording `up` in the header when `path` is a 3DGS .ply (atomically, like
    save). Other formats have no place for it and are written as they are (read back by their convention)."""
    from . import save
    from .errors import FormatError
    from .files import atomic_write
    from .ply import write_gaussian_ply

    from ..scene import GaussianScene

    if not isinstance(scene, GaussianScene):
        raise TypeError(f"save_with_up() needs a GaussianScene, got {type(scene).__name__}")
    p = Path(path)
    name = p.name.lower()
    if up is None or not name.endswith(".ply") or name.endswith(".compressed.ply"):
        save(scene, p)
        return
    try:
        with atomic_write(p) as tmp:
            write_gaussian_ply(scene, tmp, comments=(up_comment(up),))
    except FormatError as exc:  # the writer only saw the temporary path: report the real one
        if exc.path == os.fspath(p):
            raise
        raise FormatError(p, exc.problem) from None
