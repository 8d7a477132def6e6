"""`python -m engine mask SCENE ...`: lift 2D masks to a per-Gaussian 3D mask, from a views folder or one click.

    python -m engine mask scene.ply --views DIR --method galp --out part.npy
    python -m engine mask scene.ply --click 30,15,256,200 --sam sam_vit_b_01ec64.pth --out part.npy
    python -m engine mask scene.ply --text scarf --prompt "a toy robot with a red scarf" --model MODEL --out part.npy

MASK.npy holds float32 soft weights [N] in [0, 1] (0/1 with --threshold); 0.5 is the calibrated cut.
Every input is checked before any work is done and the output is written to a temporary file and renamed,
so a failure leaves nothing behind. A one-line JSON summary is printed on success.
"""

from __future__ import annotations

import argparse

from .common import UP_HELP

DEFAULT_THRESHOLD = 0.5  # both methods give calibrated weights: > 0.5 = more likely in than out

HELP = "lift multi-view 2D masks (a views folder, or SAM from one click) to a 3D per-Gaussian mask"
DESCRIPTION = (
    "Lift 2D masks to soft per-Gaussian weights and save them as MASK.npy (float32 [N]). "
    "--views DIR: DIR holds cameras.json (a list of {\"file\", \"viewmat\" 4x4 world-to-camera OpenCV, \"K\" 3x3, "
    "\"width\", \"height\"}) and the named 8-bit mask PNGs (0 = out, 255 = in). "
    "--click AZ,EL,X,Y --sam CHECKPOINT: render the scene from a framing orbit view at azimuth AZ / elevation "
    "EL degrees (--size), click pixel (X, Y), find the 3D point, segment it with SAM in that view and in "
    "--num-views orbit views around the point (views where it is hidden are skipped), then lift; the orbits "
    "circle the scene's up axis (--up). "
    "SAM checkpoints: https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth (vit_b; also vit_l "
    "sam_vit_l_0b3195.pth and vit_h sam_vit_h_4b8939.pth at the same address). "
    "--text PART [--prompt TEXT] --model MODEL: name the part; the editing model's cross-attention to the part's "
    "word(s) in --num-views orbit views of --view-size px gives 2D masks (Otsu cut; refined by SAM when --sam is "
    "given), lifted with the chosen method (engine/masks/attention.py). The prompt must contain the part's words "
    "(default 'a photo of a PART'). The closed-form prior has no attention and is refused. "
    "Methods: galp (3D-GALP, robust to wrong views; default) or vote (visibility-weighted voting)."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mask", help=HELP, description=DESCRIPTION)
    parser.add_argument("scene", metavar="SCENE", help="scene file (any readable format)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--views", metavar="DIR", help="folder with cameras.json and mask PNGs")
    source.add_argument("--click", metavar="AZ,EL,X,Y", help="a click in a framing orbit view (needs --sam)")
    source.add_argument("--text", metavar="PART", help="name the part (e.g. scarf): read from the model's attention")
    parser.add_argument("--out", metavar="MASK.npy", required=True, help="where to write the per-Gaussian weights")
    parser.add_argument("--method", choices=("galp", "vote"), default="galp", help="lifting method (default galp)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="write hard 0/1 weights (weight > T) instead of soft ones; the soft weights are "
                             "calibrated, so 0.5 (as likely in as out) is the natural cut and the default "
                             "for the 'selected' count")
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="3D-GALP optimisation steps")
    sam = parser.add_argument_group("SAM (with --click)")
    sam.add_argument("--sam", metavar="CHECKPOINT", help="SAM checkpoint file (.pth)")
    sam.add_argument("--sam-type", choices=("vit_h", "vit_l", "vit_b"), default=None,
                     help="model type (default: read from the checkpoint's file name)")
    sam.add_argument("--sam-config", metavar="JSON", default=None,
                     help="a SamConfig JSON for a non-standard architecture (tests use a tiny one)")
    sam.add_argument("--size", default="512x512", metavar="WxH", help="size of the clicked view (default 512x512)")
    sam.add_argument("--num-views", type=int, default=12, metavar="N", help="orbit views around the click")
    sam.add_argument("--view-size", type=int, default=384, metavar="PX", help="size of the orbit views")
    sam.add_argument("--save-views", metavar="DIR", default=None,
                     help="also write the SAM masks as a views folder (readable by --views)")
    sam.add_argument("--up", default="auto", help=UP_HELP)
    text = parser.add_argument_group("text selection (with --text; also --num-views, --view-size, --up, --sam)")
    text.add_argument("--prompt", default=None, help="a prompt containing the part's words (default 'a photo of a PART')")
    text.add_argument("--model", default=None,
                      help="the diffusion model used for editing: hub id or local diffusers folder (default "
                           "$SPLATEDIT_MODEL or Stable Diffusion 1.5)")
    text.add_argument("--region", metavar="MASK.npy", default=None,
                      help="a rough per-Gaussian mask ([N], > 0.5 = in) the views frame instead of the whole scene")
    parser.set_defaults(func=run)


def _parse_size(text: str) -> tuple[int, int]:
    from engine.cli.common import UserError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must be WxH in pixels, e.g. 512x512, got {text!r}") from None
    if w <= 0 or h <= 0 or w > 8192 or h > 8192:
        raise UserError(f"--size must be between 1x1 and 8192x8192, got {text!r}")
    return w, h


def _check_output(path_text: str):
    from pathlib import Path

    from engine.cli.common import UserError

    out = Path(path_text)
    if out.suffix != ".npy":
        raise UserError(f"--out must name a .npy file, got {path_text!r}")
    if not out.parent.is_dir():
        raise UserError(f"--out folder {out.parent} does not exist")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory")
    return out


def run(args: argparse.Namespace) -> int:
    import json
    import os

    import numpy as np

    from engine.cli.common import UserError, check_up_option
    from engine.io import load
    from engine.masks.galp import GalpConfig, galp
    from engine.masks.lift_vote import vote

    out = _check_output(args.out)
    if args.threshold is not None and not 0.0 <= args.threshold < 1.0:
        raise UserError(f"--threshold must be in [0, 1), got {args.threshold}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.click is not None and args.sam is None:
        raise UserError("--click needs a SAM checkpoint: pass --sam CHECKPOINT")
    if args.views is not None and (args.sam is not None or args.save_views is not None):
        raise UserError("--sam and --save-views go with --click, not with --views")
    if args.text is None and (args.prompt is not None or args.model is not None or args.region is not None):
        raise UserError("--prompt, --model and --region go with --text")
    if args.text is not None:
        _check_text_options(args)
    check_up_option(args.up)

    scene = load(args.scene)
    if len(scene) == 0:
        raise UserError(f"{args.scene} holds no Gaussians")
    summary = {"scene": str(args.scene), "out": str(out), "method": args.method, "count": len(scene)}
    if args.views is not None:
        from engine.masks.views_io import read_views

        views = read_views(args.views)
        summary["views"] = sum(len(v) for v in views)
    elif args.text is not None:
        views, info = _views_from_text(scene, args)
        summary.update(info)
    else:
        views, info = _views_from_click(scene, args)
        summary.update(info)

    if args.method == "galp":
        config = GalpConfig() if args.steps is None else GalpConfig(steps=args.steps)
        result = galp(scene, views, config=config)
    else:
        result = vote(scene, views)
    weights = result.weights[0].numpy().astype(np.float32)
    if args.threshold is not None:
        weights = (weights > args.threshold).astype(np.float32)
    tmp = out.with_name(out.name + ".tmp.npy")
    try:
        np.save(tmp, weights)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    cut = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    summary.update({"threshold": cut, "selected": int((weights > cut).sum())})
    print(json.dumps(summary))
    return 0


def _views_from_click(scene, args):
    """SAM masks around the click (and optionally a views folder of them)."""
    from engine.cli.common import UserError, resolve_up
    from engine.masks.multiview import MultiViewConfig, parse_click, scene_camera, segment_click
    from engine.masks.sam import SamConfig, load_sam
    from engine.masks.views_io import write_views

    az, el, x, y = parse_click(args.click)
    width, height = _parse_size(args.size)
    if not (0 <= x < width and 0 <= y < height):
        raise UserError(f"--click pixel ({x:g}, {y:g}) lies outside the {width}x{height} view (--size)")
    if args.num_views < 0 or not 16 <= args.view_size <= 4096:
        raise UserError("--num-views must be >= 0 and --view-size in [16, 4096]")
    config = SamConfig.from_json(args.sam_config) if args.sam_config else None
    segmenter = load_sam(args.sam, model_type=args.sam_type, config=config)
    up = resolve_up(args.up, args.scene, scene)
    camera = scene_camera(scene, az, el, width=width, height=height, up=up)
    result = segment_click(scene, segmenter, camera, x, y,
                           MultiViewConfig(num_views=args.num_views, size=args.view_size, up=up))
    if args.save_views:
        write_views(args.save_views, result.views)
    info = {
        "point": [round(float(v), 5) for v in result.point],
        "views": 1 + len(result.kept),
        "skipped_views": len(result.skipped),
    }
    return result.views, info


def _check_text_options(args) -> None:
    """--text inputs checked before the scene or the model is loaded (the closed-form prior has no attention)."""
    from engine.cli.common import UserError
    from engine.guidance import parse_model_spec
    from engine.masks.attention import NO_ATTENTION

    if not args.text.strip():
        raise UserError("--text is empty: name the part, e.g. --text scarf")
    if not 1 <= args.num_views <= 256 or not 16 <= args.view_size <= 4096:
        raise UserError("with --text, --num-views must be in [1, 256] and --view-size in [16, 4096]")
    if parse_model_spec(args.model).is_closed_form:
        raise UserError(NO_ATTENTION)


def _views_from_text(scene, args):
    """Attention masks of the named part around the scene (and optionally a views folder of them)."""
    from engine.cli.common import resolve_up
    from engine.guidance import load_guidance
    from engine.masks.attention import TextMaskConfig, select_by_text
    from engine.masks.sam import SamConfig, load_sam
    from engine.masks.views_io import write_views

    segmenter = None
    if args.sam is not None:
        config = SamConfig.from_json(args.sam_config) if args.sam_config else None
        segmenter = load_sam(args.sam, model_type=args.sam_type, config=config)
    region = None
    if args.region is not None:
        import numpy as np
        import torch

        from engine.cli.common import UserError

        try:
            region = torch.from_numpy(np.load(args.region).astype(np.float32).reshape(-1))
        except (OSError, ValueError) as exc:
            raise UserError(f"--region {args.region} is not a readable .npy mask ({exc})") from None
    model = load_guidance(args.model)
    up = resolve_up(args.up, args.scene, scene)
    cfg = TextMaskConfig(num_views=args.num_views, size=args.view_size, up=up)
    result = select_by_text(scene, model, args.text, prompt=args.prompt, config=cfg, segmenter=segmenter,
                            region=region, lift=False)
    if args.save_views:
        write_views(args.save_views, result.views)
    info = {"text": args.text, "prompt": result.prompt, "model": model.name, "views": len(result.views)}
    return [result.views], info
