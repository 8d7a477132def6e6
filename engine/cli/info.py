"""`python -m engine info SCENE`: print what a scene file holds, as one JSON object.

Output: {"path", "format", "count", "sh_degree", "bbox": {"min": [x, y, z], "max": [x, y, z]}} where format is
one of ply (3DGS), compressed_ply, splat, spz, mesh, point_cloud, and bbox is null for an empty scene.
"""

from __future__ import annotations

import argparse

HELP = "print a scene file's format, Gaussian count, SH degree and bounding box as JSON"
DESCRIPTION = (
    "Read a scene file and print one JSON object: "
    '{"path", "format", "count", "sh_degree", "bbox": {"min": [x,y,z], "max": [x,y,z]}}. '
    "Readable formats: 3DGS .ply (INRIA layout, binary or ascii), SuperSplat .compressed.ply, antimatter15 "
    ".splat, Niantic .spz (versions 1-4), meshes (.obj .glb .gltf .off .stl, mesh .ply) and point clouds "
    "(.ply .pcd .xyz), which are turned into Gaussians. A bad file prints one 'error:' line and exits 2."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help=HELP, description=DESCRIPTION)
    parser.add_argument("scene", metavar="SCENE", help="path of the scene file to inspect")
    parser.add_argument("--indent", type=int, default=None, metavar="N", help="pretty-print the JSON with N spaces")
    parser.set_defaults(func=run)


def describe(path: str) -> dict:
    """The info record of one scene file (what `info` prints)."""
    from engine.io import detect_format, load

    fmt = detect_format(path)
    scene = load(path)
    bbox = None
    if len(scene):
        lo, hi = scene.bounding_box()
        bbox = {"min": [float(v) for v in lo], "max": [float(v) for v in hi]}
    return {"path": str(path), "format": fmt, "count": len(scene), "sh_degree": scene.sh_degree, "bbox": bbox}


def run(args: argparse.Namespace) -> int:
    import json

    print(json.dumps(describe(args.scene), indent=args.indent))
    return 0
