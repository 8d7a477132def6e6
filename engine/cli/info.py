"""`python -m engine info SCENE`: print what a scene file holds, as one JSON object.

Output: {"path", "format", "count", "sh_degree", "bbox": {"min": [x, y, z], "max": [x, y, z]}, "up", "up_source",
"notes"} where
format is one of ply (3DGS), compressed_ply, splat, spz, sog, ksplat, gltf_splat, mesh, point_cloud; bbox is null for an
empty scene; notes says what the reader changed on the way in (e.g. "clamped_infinite_opacities": how many
+/-Inf opacity logits of a .ply were read as fully opaque / transparent), {} when nothing; up is the detected up
axis ("+z", "-y", ... or "x,y,z") and up_source how it was found (file / format / geometry, engine/io/detect_up.py).
"""

from __future__ import annotations

import argparse

HELP = "print a scene file's format, Gaussian count, SH degree and bounding box as JSON"
DESCRIPTION = (
    "Read a scene file and print one JSON object: "
    '{"path", "format", "count", "sh_degree", "bbox": {"min": [x,y,z], "max": [x,y,z]}, "up", "up_source", '
    '"notes": {...}}. '
    "Readable formats: 3DGS .ply (INRIA layout, binary or ascii), SuperSplat .compressed.ply, antimatter15 "
    ".splat, Niantic .spz (versions 1-4), PlayCanvas SOG (.sog or meta.json), .ksplat (modes 0-2), Gaussian .glb, meshes "
    "(.obj .glb .gltf .off .stl, mesh .ply) and point clouds (.ply .pcd .xyz), which are turned into Gaussians. "
    "A bad file prints one 'error:' line and exits 2."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help=HELP, description=DESCRIPTION)
    parser.add_argument("scene", metavar="SCENE", help="path of the scene file to inspect")
    parser.add_argument("--indent", type=int, default=None, metavar="N", help="pretty-print the JSON with N spaces")
    parser.add_argument("--spz-frame", choices=("spec", "raw"), default="raw",
                        help="how to read a .spz: 'spec' converts from the RUB frame, 'raw' keeps stored values")  # fmt: skip
    parser.set_defaults(func=run)


def describe(path: str, spz_frame: str = "raw") -> dict:
    """The info record of one scene file (what `info` prints)."""
    from engine.io import detect_format, load
    from engine.io.detect_up import detect_up
    from engine.up import format_up

    fmt = detect_format(path)
    notes: dict = {}
    scene = load(path, spz_frame=spz_frame, notes=notes)
    bbox = None
    if len(scene):
        lo, hi = scene.bounding_box()
        bbox = {"min": [float(v) for v in lo], "max": [float(v) for v in hi]}
    up = detect_up(path, scene)
    return {"path": str(path), "format": fmt, "count": len(scene), "sh_degree": scene.sh_degree, "bbox": bbox,
            "up": format_up(up.up), "up_source": up.source,
            "notes": {k: v for k, v in notes.items() if v}}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import json

    print(json.dumps(describe(args.scene, args.spz_frame), indent=args.indent))
    return 0
