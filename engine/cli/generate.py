"""`python -m engine generate --prompt "..." --model MODEL --steps N --out scene.ply`: text-to-3D, headless.

Order of work, so that bad input costs nothing: check the options, read the init file (a bad or empty mesh is
refused here), check the output path, and only then load the diffusion model and optimize (engine/generate/).
"""

from __future__ import annotations

import argparse

HELP = "generate a Gaussian scene from a text prompt by score distillation"
DESCRIPTION = (
    "Grow a Gaussian scene from a starting shape (a sphere or ellipsoid of random-coloured Gaussians, or a mesh / "
    "point cloud / scene file) by score distillation toward PROMPT: random orbit cameras around the object, the "
    "whole scene optimized, densified and pruned, render size growing from low to high and the diffusion "
    "timestep range annealed. Methods: sds (score distillation sampling, DreamFusion) or ism (interval score "
    "matching, LucidDreamer: no random-noise term, lower guidance scale), nfsd (noise-free SDS), csd (classifier "
    "score distillation) or esd (entropic SDS). MODEL is a Hugging Face hub id, a "
    "local diffusers folder, or closed-form:<colour> (the offline closed-form prior, e.g. closed-form:#d02020). "
    "Bad input prints one 'error:' line and exits 2 before any work."
)


# Defaults and limits, spelled out so that `--help` does not import torch; tests check they match
# engine.generate's GenerateConfig, METHODS, MAX_STEPS and resolution limits.
METHODS = ("sds", "ism", "nfsd", "csd", "esd")
SCHEDULES = ("random", "dreamtime", "linear")
MAX_STEPS = 100_000
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048
DEFAULTS = {
    "steps": 1000, "init": "sphere", "num_gaussians": 2000, "method": "sds", "resolution": 512, "seed": 0,
    "batch_size": 1, "t_min": None, "t_max": None, "t_max_end": None, "schedule": None,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    d = argparse.Namespace(**DEFAULTS)
    p = subparsers.add_parser("generate", help=HELP, description=DESCRIPTION)
    p.add_argument("--prompt", required=True, help="what to generate, e.g. \"a ceramic mug with a blue glaze\"")
    p.add_argument("--model", default=None,
                   help="diffusion model: hub id, local diffusers folder, or closed-form:<colour> "
                        "(default: $SPLATEDIT_MODEL or Stable Diffusion 1.5)")
    p.add_argument("--out", required=True, metavar="OUT", help="scene file to write: .ply, .splat or .spz")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimization steps, 1-{MAX_STEPS} (default {d.steps})")
    p.add_argument("--init", default=d.init, metavar="sphere|ellipsoid|FILE",
                   help="starting scene: a primitive, or a mesh / point cloud / scene file used as is "
                        f"(default {d.init})")
    p.add_argument("--num-gaussians", type=int, default=d.num_gaussians,
                   help=f"Gaussians in the starting primitive (default {d.num_gaussians})")
    p.add_argument("--method", choices=METHODS, default=d.method, help=f"distillation loss (default {d.method})")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help=f"final render size in pixels, {MIN_RESOLUTION}-{MAX_RESOLUTION}, a multiple of the model's "
                        f"latent scale (default {d.resolution})")
    p.add_argument("--resolution-start", type=int, default=None,
                   help="render size at the first step (default: a quarter of --resolution, at least 64)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="classifier-free guidance scale (default: the method's; 100 for sds/esd, 7.5 for ism/nfsd, "
                        "2 for csd)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"views per step (default {d.batch_size})")
    p.add_argument("--t-min", type=float, default=d.t_min,
                   help="lowest timestep fraction (default: the method's for the model's family: 0.02; 0.3 on an "
                        "SD3-class rectified-flow model, RoMaP's config)")
    p.add_argument("--t-max", type=float, default=d.t_max, help="highest timestep fraction at the start "
                                                                 "(default 0.98)")
    p.add_argument("--t-max-end", type=float, default=d.t_max_end,
                   help="t-max annealed to this by the last step (default 0.5; none on an SD3-class model); "
                        "equal to --t-max: none")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="how t moves: random (uniform, t-max annealed), dreamtime (DreamTime's non-increasing t) or "
                        "linear (default random)")
    p.add_argument("--up", default="auto",
                   help="world up axis of the orbit: auto (default: +z for the sphere/ellipsoid, the file's for a file "
                        "init; see engine/io/detect_up.py), +z, -y, +y, -z, +x, -x or x,y,z (write --up=-y)")
    p.add_argument("--no-densify", action="store_true", help="do not clone/split/prune (the count stays fixed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from engine.generate import GenerateConfig

    config = GenerateConfig(
        prompt=args.prompt, model=args.model or "", method=args.method, steps=args.steps,
        resolution=args.resolution, resolution_start=args.resolution_start, batch_size=args.batch_size,
        guidance_scale=args.guidance_scale, seed=args.seed, t_min=args.t_min, t_max=args.t_max,
        t_max_end=args.t_max_end, schedule=args.schedule, init=args.init, num_gaussians=args.num_gaussians, preview_every=0,
    )
    config.densify.enabled = not getattr(args, "no_densify", False)
    return config


def run(args: argparse.Namespace) -> int:
    from engine.generate import check_generate_config, initial_scene, run_generate
    from engine.guidance import load_guidance, parse_model_spec
    from engine.io.detect_up import detect_up, save_with_up

    from .common import check_scene_output, check_up_option, step_progress

    config = config_from_args(args)
    up = check_up_option(args.up)
    check_generate_config(config)
    spec = parse_model_spec(args.model)
    start = initial_scene(config)
    if up is None:  # primitives are built +z up; a file init has its own up
        up = config.up if config.init in ("sphere", "ellipsoid") else detect_up(config.init, start).up
    config.up = tuple(up)
    check_scene_output(args.out)
    model = load_guidance(spec)
    check_generate_config(config, model)

    with step_progress(config.steps, "generate", quiet=args.quiet,
                       fields=lambda event: {"res": event.resolution}) as on_event:
        scene = run_generate(config, model, on_event=on_event, initial=start)
    save_with_up(scene, args.out, config.up)
    if not args.quiet:
        from engine.guidance.methods import family_of

        print(f"wrote {args.out}: {len(scene)} Gaussians ({config.method}, {config.steps} steps, model {model.name}; "
              f"{config.resolved(family_of(model)).describe()})")
    return 0
