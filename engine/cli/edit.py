"""`python -m engine edit SCENE --mask MASK.npy --prompt "..." --out OUT.ply`: one part-level edit, headless.

Order of work, so that bad input costs nothing: read the scene and the mask, check them with the options
(engine.edit.check_edit_inputs: empty or wrong-length mask, empty prompt, DDS without a source prompt, NaN/Inf,
out-of-range steps or resolution), check the output path, and only then load the diffusion model and edit.
"""

from __future__ import annotations

import argparse

from .common import add_up_option

HELP = "edit the masked part of a scene toward a text prompt (masked SDS / DDS / RoMaP / ISM / NFSD / CSD / ESD / ...)"
DESCRIPTION = (
    "Edit the Gaussians selected by MASK toward PROMPT by masked score distillation; every other Gaussian is "
    "written back bit-identical. Methods: sds (masked score distillation sampling), dds (delta denoising score: "
    "needs --source-prompt describing the part as it is), romap (masked SDS + L1 anchor toward part-edited 2D "
    "images made by scheduled latent mixing, after resetting the part's colour: 'Gaussian prior removal'), ism "
    "(interval score matching), nfsd (noise-free SDS), csd (classifier score distillation), esd (entropic SDS), "
    "dreamcatalyst (DDS + identity pull, falling t: needs --source-prompt), lusd (localized update SD). "
    "MASK.npy holds one weight in [0, 1] per Gaussian (float) or a boolean array, in the scene's order. MODEL is "
    "a Hugging Face hub id, a local diffusers folder, closed-form:<colour> (the offline demo: the part becomes that "
    "colour, e.g. closed-form:#d02020) or reference:SCENE (the ideal result is SCENE: ground-truth checks). "
    "Edits stay in their region: the masked Gaussians dilated by --region-margin, plus any --region-box. Bad input prints one 'error:' line and exits 2 before any work."
)

# Defaults and limits, spelled out so that `--help` does not import torch; tests check they match engine.edit.
METHODS = ("sds", "dds", "romap", "ism", "nfsd", "csd", "esd", "dreamcatalyst", "lusd")
SCHEDULES = ("random", "dreamtime", "linear")
MAX_STEPS = 100_000
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048
DEFAULTS = {
    "method": "sds", "steps": 500, "resolution": 512, "seed": 0, "batch_size": 1, "t_min": None, "t_max": None,
    "mask_threshold": 0.5, "anchor_weight": 1.0, "anchor_refresh": 50, "anchor_views": 8,
    "edit": "auto", "region_margin": 0.5, "min_visible_fraction": 0.25,
}
EDIT_KINDS = ("auto", "appearance", "shape")
LR_DEFAULTS = {"means": 0.0015, "scales": 0.01, "quats": 0.001, "opacities": 0.05, "sh0": 0.03, "shN": 0.0015}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    d = argparse.Namespace(**DEFAULTS)
    p = subparsers.add_parser("edit", help=HELP, description=DESCRIPTION)
    p.add_argument("scene", metavar="SCENE", help="scene file to edit (.ply, .splat, .spz, .compressed.ply)")
    p.add_argument("--mask", required=True, metavar="MASK.npy",
                   help="per-Gaussian weights in [0, 1] (float array of length N) or a boolean array")
    p.add_argument("--prompt", required=True, help="what the masked part should become, e.g. \"a red scarf\"")
    p.add_argument("--source-prompt", default="", help="what the part is now (required by --method dds and dreamcatalyst)")
    p.add_argument("--method", choices=METHODS, default=d.method, help=f"edit method (default {d.method})")
    p.add_argument("--model", default=None,
                   help="diffusion model: hub id, local diffusers folder, or closed-form:<colour> "
                        "(default: $SPLATEDIT_MODEL or Stable Diffusion 1.5)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimization steps, 1-{MAX_STEPS} (default {d.steps})")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help=f"render size in pixels, {MIN_RESOLUTION}-{MAX_RESOLUTION}, a multiple of the model's latent "
                        f"scale (8 for Stable Diffusion) (default {d.resolution})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed; same seed, same result on CPU "
                                                            f"(default {d.seed})")
    p.add_argument("--out", required=True, metavar="OUT", help="scene file to write: .ply, .splat or .spz")
    p.add_argument("--mask-out", default=None, metavar="MASK.npy",
                   help="also write the edited scene's mask (densification changes the Gaussian count)")
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="classifier-free guidance scale (default: the method's; 100 for sds/romap/esd, 7.5 for "
                        "dds/ism/nfsd/dreamcatalyst, 2 for csd)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"views per step (default {d.batch_size})")
    p.add_argument("--t-min", type=float, default=d.t_min, help="lowest timestep fraction (default: the method's; "
                                                                 "0.02, dreamcatalyst 0.2, lusd 0.05; 0.3 on an "
                                                                 "SD3-class rectified-flow model except for "
                                                                 "dreamcatalyst and lusd: RoMaP's config)")
    p.add_argument("--t-max", type=float, default=d.t_max, help="highest timestep fraction (default: the method's; "
                                                                 "0.98, dreamcatalyst 0.9, lusd 0.95)")
    p.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="how t moves: random (uniform, t-max annealed), dreamtime (DreamTime's non-increasing t) or "
                        "linear (default: the method's; linear for dreamcatalyst, random for the rest)")
    p.add_argument("--t-max-end", type=float, default=None, help="anneal t-max to this by the last step (default: 0.5 "
                                                                 "for sds/romap/ism/nfsd/csd/esd, none for the "
                                                                 "others and on an SD3-class model)")
    p.add_argument("--mask-threshold", type=float, default=d.mask_threshold,
                   help=f"Gaussians with weight above this are edited (default {d.mask_threshold})")
    p.add_argument("--no-densify", action="store_true", help="do not clone/split/prune inside the mask")
    p.add_argument("--prior-removal", choices=("auto", "on", "off"), default="auto",
                   help="reset the masked part's colour before the edit (auto: on for romap only)")
    p.add_argument("--regrow", action="store_true",
                   help="with prior removal: delete the masked Gaussians and regrow the part from a few seeds")
    p.add_argument("--anchor-weight", type=float, default=d.anchor_weight,
                   help=f"romap: weight of the L1 anchor loss (default {d.anchor_weight})")
    p.add_argument("--anchor-refresh", type=int, default=d.anchor_refresh,
                   help=f"romap: remake the anchor images every K steps (default {d.anchor_refresh})")
    p.add_argument("--anchor-views", type=int, default=d.anchor_views,
                   help=f"romap: number of anchor views (default {d.anchor_views})")
    p.add_argument("--edit", choices=EDIT_KINDS, default=d.edit,
                   help="appearance: colour only, geometry kept exactly; shape: geometry moves, densifies and may "
                        "fill --region-box volumes; auto: colour first, geometry only if the prior still pushes (default auto)")
    p.add_argument("--region-margin", type=float, default=d.region_margin,
                   help="the edit region is the masked Gaussians dilated by this fraction of the part's radius; "
                        f"edited Gaussians stay inside it and no pixel outside it is pushed (default {d.region_margin})")
    p.add_argument("--region-box", action="append", default=[], metavar="X0,Y0,Z0,X1,Y1,Z1",
                   help="add an axis-aligned box (world units) to the edit region, e.g. empty space where something "
                        "should be added; repeatable (write --region-box=-1,... when the first number is negative)")
    p.add_argument("--min-visible-fraction", type=float, default=d.min_visible_fraction,
                   help="redraw sampled views that see less than this fraction of the part "
                        f"(default {d.min_visible_fraction})")
    for name, value in LR_DEFAULTS.items():
        p.add_argument(f"--lr-{name.lower()}", dest=f"lr_{name}", type=float, default=value,
                       help=f"Adam learning rate of {name} (default {value})")
    add_up_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from engine.edit import EditConfig, LearningRates

    config = EditConfig(
        prompt=args.prompt, source_prompt=args.source_prompt, method=args.method, model=args.model or "",
        steps=args.steps, resolution=args.resolution, seed=args.seed, batch_size=args.batch_size,
        guidance_scale=args.guidance_scale, t_min=args.t_min, t_max=args.t_max, t_max_end=args.t_max_end,
        schedule=args.schedule, mask_threshold=args.mask_threshold, anchor_weight=args.anchor_weight, anchor_refresh=args.anchor_refresh,
        anchor_views=args.anchor_views, preview_every=0, edit=args.edit, region_margin=args.region_margin,
        region_boxes=tuple(parse_box(text) for text in args.region_box),
        min_visible_fraction=args.min_visible_fraction,
        lr=LearningRates(**{name: getattr(args, f"lr_{name}") for name in LR_DEFAULTS}),
    )
    config.densify.enabled = not args.no_densify
    config.prior.enabled = {"auto": None, "on": True, "off": False}[args.prior_removal]
    config.prior.regrow = bool(args.regrow)
    return config


def parse_box(text: str):
    """'x0,y0,z0,x1,y1,z1' -> engine.edit.Box; UserError saying what is wrong otherwise."""
    from engine.edit import Box

    from .common import UserError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--region-box {text!r}: six comma-separated numbers x0,y0,z0,x1,y1,z1 expected") from None
    if len(values) != 6:
        raise UserError(f"--region-box {text!r}: six numbers expected, got {len(values)}")
    try:
        return Box(tuple(values[:3]), tuple(values[3:]))
    except ValueError as exc:
        raise UserError(f"--region-box {text!r}: {exc}") from None


def read_mask(path: str):
    """The mask file as a numpy array; UserError naming the file when it cannot be read."""
    import numpy as np

    from .common import UserError

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: mask file does not exist") from None
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a .npy array of per-Gaussian weights ({exc})") from None


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from engine.edit import as_mask, check_edit_inputs, run_edit
    from engine.guidance import load_guidance, parse_model_spec
    from engine.io import load
    from engine.io.detect_up import save_with_up

    from .common import UserError, check_scene_output, check_up_option, resolve_up, step_progress

    config = config_from_args(args)
    check_up_option(args.up)
    scene = load(args.scene)
    config.up = resolve_up(args.up, args.scene, scene)
    mask_array = read_mask(args.mask)
    try:
        as_mask(mask_array, len(scene))
    except ValueError as exc:
        raise UserError(f"{args.mask}: {exc}") from None
    check_edit_inputs(scene, mask_array, config)
    spec = parse_model_spec(args.model)
    check_scene_output(args.out)
    if args.mask_out:
        _check_output_folder(args.mask_out)
    model = load_guidance(spec)
    check_edit_inputs(scene, mask_array, config, model)

    with step_progress(config.steps, f"edit ({config.method})", quiet=args.quiet) as on_event:
        result = run_edit(scene, mask_array, config, model, on_event=on_event)
    save_with_up(result.scene, args.out, config.up)
    if args.mask_out:
        np.save(args.mask_out, result.mask.cpu().numpy())
    if not args.quiet:
        changed = int((result.mask > config.mask_threshold).sum())
        from engine.guidance.methods import family_of

        print(f"wrote {args.out}: {len(result.scene)} Gaussians, {changed} edited ({config.method}, "
              f"{config.steps} steps, model {model.name}; {config.resolved(family_of(model)).describe()})")
    return 0


def _check_output_folder(path: str) -> None:
    from pathlib import Path

    from .common import UserError

    parent = Path(path).parent if str(Path(path).parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{path}: folder '{parent}' does not exist")
