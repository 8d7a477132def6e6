"""`python -m engine convert IN OUT`: convert a scene file between formats (chosen by the extensions).

The output is written to a temporary file next to OUT and renamed, so a failure never leaves a half file.
"""

from __future__ import annotations

import argparse
import sys

HELP = "convert a scene file between formats (any readable -> .ply, .splat or .spz)"
DESCRIPTION = (
    "Read IN in any readable format (3DGS .ply, SuperSplat .compressed.ply, .splat, .spz, meshes .obj .glb "
    ".gltf .off .stl and point clouds .ply .pcd .xyz) and write OUT as 3DGS .ply (lossless, INRIA layout), "
    "antimatter15 .splat (degree-0 colour only, 8-bit colour/opacity/rotation) or Niantic .spz (quantized; "
    "stored in SPZ's RUB frame). The format is chosen by OUT's extension. OUT is replaced atomically. "
    "A bad file prints one 'error:' line and exits 2."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help=HELP, description=DESCRIPTION)
    parser.add_argument("input", metavar="IN", help="scene file to read")
    parser.add_argument("output", metavar="OUT", help="file to write: .ply, .splat or .spz")
    parser.add_argument(
        "--spz-version",
        type=int,
        choices=(2, 3, 4),
        default=None,
        help="SPZ version to write (default 3, gzip; 4 uses zstd and needs the zstandard package)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.io import detect_format, load, save

    scene = load(args.input)
    out = args.output.lower()
    if out.endswith(".splat") and scene.sh_degree > 0:
        print(f"note: .splat has no view-dependent colour; SH degree {scene.sh_degree} dropped to 0", file=sys.stderr)
    save(scene, args.output, spz_version=args.spz_version if out.endswith(".spz") else None)
    if not args.quiet:
        print(
            f"wrote {args.output}: {len(scene)} Gaussians, SH degree "
            f"{0 if out.endswith('.splat') else scene.sh_degree} (from {detect_format(args.input)})"
        )
    return 0
