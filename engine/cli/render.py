"""`python -m engine render SCENE --out IMAGE.png`: one orbit view of a scene, framed on it.

The camera orbits the centre of the scene's bounding box (1% outliers ignored) at the distance where the
box's bounding sphere fills the vertical field of view; azimuth / elevation follow engine.camera's
conventions (degrees; azimuth counter-clockwise around `up` from +x, elevation above the horizon). `up` is
the file's (engine.io.detect_up: its metadata, else its format's convention, else geometry) unless --up says.
The image is written atomically (temporary file, then rename), only after the render succeeded.
"""

from __future__ import annotations

import argparse

from .common import add_up_option

HELP = "render one orbit view of a scene to an image (PNG/JPEG)"
DESCRIPTION = (
    "Render SCENE (.ply, .splat, .spz, .compressed.ply, meshes, point clouds) from an orbit camera framed on "
    "it and write IMAGE (.png, .jpg or .jpeg). Angles are in degrees: azimuth counter-clockwise around the "
    "up axis from +x, elevation above the horizon. Bad input prints one 'error:' line and exits 2."
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_SIZE = 8192


def add_view_options(parser: argparse.ArgumentParser, *, size_default: int = 512) -> None:
    """Options shared with `turntable`: image size, field of view, elevation, background, up axis, backend."""
    parser.add_argument("--width", type=int, default=size_default, help=f"image width in pixels (default {size_default})")
    parser.add_argument("--height", type=int, default=size_default, help=f"image height in pixels (default {size_default})")
    parser.add_argument("--elevation", type=float, default=20.0, help="degrees above the horizon (default 20)")
    parser.add_argument("--fov", type=float, default=45.0, help="vertical field of view in degrees (default 45)")
    parser.add_argument("--distance", type=float, default=None,
                        help="camera distance from the scene centre (default: frame the whole scene)")
    parser.add_argument("--background", default="black",
                        help="a colour name, #rrggbb, r,g,b in [0, 1] or rgb(r, g, b) in 0-255 (default black)")
    add_up_option(parser)
    parser.add_argument("--sh-degree", type=int, default=None, help="SH degree to render (default: the scene's)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "gsplat", "triton", "reference"),
                        help="renderer (default auto: on CUDA gsplat where it works, else triton, else the CPU "
                             "rasterizer)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("render", help=HELP, description=DESCRIPTION)
    parser.add_argument("scene", metavar="SCENE", help="scene file to render")
    parser.add_argument("--out", required=True, metavar="IMAGE", help="output image (.png, .jpg, .jpeg)")
    parser.add_argument("--azimuth", type=float, default=30.0, help="degrees around the up axis from +x (default 30)")
    add_view_options(parser)
    parser.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ helpers
def background_colour(text: str) -> tuple[float, float, float]:
    """`--background` as RGB in [0, 1] (engine.colour's grammar); a bad value is the user's error."""
    from engine.colour import parse_colour

    from .common import UserError

    try:
        return parse_colour(text)
    except ValueError as exc:
        raise UserError(f"--background: {exc}") from None


def check_view_options(args: argparse.Namespace) -> None:
    """Validate the shared options before any file is read (one clear error per problem)."""
    from .common import UserError, check_up_option

    for name in ("width", "height"):
        value = getattr(args, name)
        if not 1 <= value <= MAX_SIZE:
            raise UserError(f"--{name} must be between 1 and {MAX_SIZE}, got {value}")
    if not 0.0 < args.fov < 180.0:
        raise UserError(f"--fov must be in (0, 180) degrees, got {args.fov}")
    if not -90.0 <= args.elevation <= 90.0:
        raise UserError(f"--elevation must be in [-90, 90] degrees, got {args.elevation}")
    if args.distance is not None and not args.distance > 0.0:
        raise UserError(f"--distance must be positive, got {args.distance}")
    if args.sh_degree is not None and not 0 <= args.sh_degree <= 3:
        raise UserError(f"--sh-degree must be 0-3, got {args.sh_degree}")
    background_colour(args.background)
    check_up_option(args.up)


def check_output(path: str, suffixes: tuple[str, ...], what: str) -> None:
    import os

    from .common import UserError

    if not path.lower().endswith(suffixes):
        raise UserError(f"--out {path!r}: {what} must end with one of {', '.join(suffixes)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--out {path!r}: folder {folder} does not exist")


def load_scene(path: str, sh_degree: int | None):
    """The scene (float32, on CUDA when available) and the SH degree to render."""
    import torch

    from engine.io import load

    from .common import UserError

    scene = load(path)
    if len(scene) == 0:
        raise UserError(f"{path}: the scene has no Gaussians")
    if sh_degree is not None and sh_degree > scene.sh_degree:
        raise UserError(f"--sh-degree {sh_degree}: {path} only has SH degree {scene.sh_degree}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return scene.to(device=device, dtype=torch.float32), scene.sh_degree if sh_degree is None else sh_degree


def framed_cameras(scene, azimuths_deg, args: argparse.Namespace, up):
    """Orbit cameras around the scene's robust bounding box centre and its `up` axis, framed on it unless
    --distance is given."""
    from engine.camera import framing_radius, orbit_cameras

    lo, hi = scene.bounding_box(quantile=0.01 if len(scene) >= 100 else 0.0)
    centre = ((lo + hi) / 2).double().cpu()
    half_extent = max(float((hi - lo).norm()) / 2, 1e-6)
    distance = args.distance if args.distance is not None else framing_radius(half_extent, args.fov)
    cams = orbit_cameras(centre, distance, azimuths_deg, args.elevation, width=args.width, height=args.height,
                         fov_y_deg=args.fov, up=up)
    return cams.to(scene.device)


def render_views(scene, cameras, args: argparse.Namespace, sh_degree: int, batch: int = 8):
    """uint8 images [C, H, W, 3], rendered `batch` views at a time."""
    import numpy as np
    import torch

    from engine.render import render
    from engine.render.images import to_uint8

    background = background_colour(args.background)
    images = []
    with torch.no_grad():
        for start in range(0, len(cameras), batch):
            out = render(scene, cameras[start : start + batch], sh_degree=sh_degree, background=background,
                         backend=args.backend)
            images.append(to_uint8(out.rgb))
    return np.concatenate(images)


def write_atomically(path: str, write) -> None:
    """Call write(tmp_path) for a temporary file beside `path` (same suffix), then rename it over `path`."""
    import os
    import tempfile

    folder, name = os.path.split(os.path.abspath(path))
    suffix = os.path.splitext(name)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from .common import resolve_up

    check_output(args.out, IMAGE_SUFFIXES, "the image")
    check_view_options(args)
    scene, sh_degree = load_scene(args.scene, args.sh_degree)
    cameras = framed_cameras(scene, [args.azimuth], args, resolve_up(args.up, args.scene, scene))
    image = render_views(scene, cameras, args, sh_degree)[0]
    write_atomically(args.out, lambda tmp: Image.fromarray(image).save(tmp))
    print(f"wrote {args.out} ({args.width}x{args.height}, {len(scene)} Gaussians)")
    return 0
