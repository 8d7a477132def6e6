"""`python -m engine convert IN OUT`: convert a scene file between formats (chosen by the extensions).

OUT's format and folder are checked before IN is read (a wrong extension fails at once, not after loading a
large file). The output is written to a temporary file next to OUT and renamed, so a failure never leaves a
half file.
"""

from __future__ import annotations

import argparse
import sys

HELP = "convert a scene file between formats (any readable -> .ply, .compressed.ply, .splat, .spz, .sog)"
DESCRIPTION = (
    "Read IN in any readable format (3DGS .ply, SuperSplat .compressed.ply, .splat, .spz, PlayCanvas .sog or "
    "an unbundled SOG's meta.json, .ksplat, KHR_gaussian_splatting .glb/.gltf, meshes .obj .glb .gltf .off .stl and "
    "point clouds .ply .pcd .xyz) "
    "and write OUT as 3DGS .ply (lossless, INRIA layout), SuperSplat .compressed.ply (chunk-quantized), "
    "antimatter15 .splat (degree-0 colour only, 8-bit colour/opacity/rotation), Niantic .spz (quantized) or "
    "PlayCanvas SOG (.sog bundle, or OUT ending in .json: meta.json plus WebP images beside it). The format is "
    "chosen by OUT's extension. OUT is replaced atomically. A bad file prints one 'error:' line and exits 2."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help=HELP, description=DESCRIPTION)
    parser.add_argument("input", metavar="IN", help="scene file to read")
    parser.add_argument("output", metavar="OUT", help="file to write: .ply, .compressed.ply, .splat, .spz, .sog, .json")
    parser.add_argument(
        "--spz-version",
        type=int,
        choices=(2, 3, 4),
        default=None,
        help="SPZ version to write (default 3, gzip; 4 uses zstd and needs the zstandard package)",
    )
    parser.add_argument(
        "--spz-frame",
        choices=("spec", "raw"),
        default="raw",
        help="coordinate frame of .spz input and output: 'raw' (default) keeps the stored values in the .ply "
        "frame, as SuperSplat, splat-transform and Niantic's ply-to-spz tool read and write them; 'spec' converts "
        "from/to the RUB frame the spz README defines (180 degrees about x), for tools that honour it. Nothing in "
        "the file says which one wrote it",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.io import check_writable, detect_format, load, save

    out_format = check_writable(args.output)  # before reading IN
    in_format = detect_format(args.input)
    if args.spz_version is not None and out_format != "spz":
        raise ValueError(f"{args.output}: --spz-version only applies to .spz output")
    notes: dict = {}
    scene = load(args.input, spz_frame=args.spz_frame, notes=notes)
    if notes.get("clamped_infinite_opacities"):
        print(f"note: {notes['clamped_infinite_opacities']} +/-Inf opacity logits read as fully opaque / transparent",
              file=sys.stderr)  # fmt: skip
    if out_format == "splat" and scene.sh_degree > 0:
        print(f"note: .splat has no view-dependent colour; SH degree {scene.sh_degree} dropped to 0", file=sys.stderr)
    save(scene, args.output, spz_version=args.spz_version, spz_frame=args.spz_frame)
    if not args.quiet:
        print(
            f"wrote {args.output}: {len(scene)} Gaussians, SH degree "
            f"{0 if out_format == 'splat' else scene.sh_degree} (from {in_format})"
        )
    return 0
