"""`python -m engine turntable SCENE --out video.mp4`: a full orbit around a scene as an H.264 video.

Frames are rendered like `render` (same framing, up axis and options), a few views per render call, and encoded
with imageio's bundled ffmpeg; the video is written atomically once every frame is done.
"""

from __future__ import annotations

import argparse

from .render import add_view_options

HELP = "render a 360-degree orbit video of a scene (.mp4)"
DESCRIPTION = (
    "Render FRAMES views evenly spaced on a full orbit around SCENE (framed like `render`) and write them as an "
    "H.264 .mp4 video. Width and height must be even (a requirement of the video codec). Bad input prints one "
    "'error:' line and exits 2."
)
VIDEO_SUFFIXES = (".mp4",)
MAX_FRAMES = 3600


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("turntable", help=HELP, description=DESCRIPTION)
    parser.add_argument("scene", metavar="SCENE", help="scene file to render")
    parser.add_argument("--out", required=True, metavar="VIDEO", help="output video (.mp4)")
    parser.add_argument("--frames", type=int, default=60, help="number of frames on the orbit (default 60)")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument("--start-azimuth", type=float, default=0.0, help="azimuth of the first frame (default 0)")
    parser.add_argument("--size", type=int, default=None, help="shortcut for --width and --height")
    add_view_options(parser, size_default=256)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .common import UserError, resolve_up
    from .render import check_output, check_view_options, framed_cameras, load_scene, render_views, write_atomically

    if args.size is not None:
        args.width = args.height = args.size
    check_output(args.out, VIDEO_SUFFIXES, "the video")
    check_view_options(args)
    if not 1 <= args.frames <= MAX_FRAMES:
        raise UserError(f"--frames must be between 1 and {MAX_FRAMES}, got {args.frames}")
    if not 0.0 < args.fps <= 240.0:
        raise UserError(f"--fps must be in (0, 240], got {args.fps}")
    if args.width % 2 or args.height % 2:
        raise UserError(f"video size must be even, got {args.width}x{args.height}")

    scene, sh_degree = load_scene(args.scene, args.sh_degree)
    azimuths = args.start_azimuth + 360.0 * np.arange(args.frames) / args.frames
    cameras = framed_cameras(scene, azimuths, args, resolve_up(args.up, args.scene, scene))
    frames = render_views(scene, cameras, args, sh_degree)

    def write(path: str) -> None:
        import imageio.v2 as imageio

        writer = imageio.get_writer(path, format="FFMPEG", fps=args.fps, codec="libx264", quality=8,
                                    macro_block_size=1, pixelformat="yuv420p")
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()

    write_atomically(args.out, write)
    print(f"wrote {args.out} ({args.frames} frames, {args.width}x{args.height})")
    return 0
