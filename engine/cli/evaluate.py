"""`python -m engine evaluate ORIGINAL EDITED --mask MASK.npy --prompt "..."`: the batch's edit metrics, for one
edit made any way (prints one JSON object; `--out` also writes it).

Same numbers as a batch edit job (engine.evaluate: report.py and clip.py): PSNR inside/outside the part vs the
input, spill vs the input, Gaussian counts, `frozen_changed`; PSNR vs `--target`; CLIP score and CLIP direction
with --clip.
"""

from __future__ import annotations

import argparse

HELP = "measure an edit: PSNR inside/outside the part, spill vs the input, counts; CLIP scores with --clip"
DESCRIPTION = (
    "Render the input and the edited scene on a fixed ring of held-out views around the masked part and measure "
    "the edit: psnr_inside / psnr_outside (edited vs input, inside / outside the part's projected region), "
    "spill_vs_input (share of pixels clearly outside the part that changed), Gaussian counts and frozen_changed "
    "(unmasked Gaussians that differ: 0 for our edits); with --target (a ground-truth edited scene) PSNR against "
    "it; with --clip MODEL the CLIP score of the edited renders to PROMPT and the CLIP directional similarity "
    "(source prompt -> prompt), as the editing papers report them (OpenAI CLIP ViT-L/14 at 224 px: "
    "openai/clip-vit-large-patch14)."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from .common import add_up_option

    p = subparsers.add_parser("evaluate", help=HELP, description=DESCRIPTION)
    p.add_argument("original", metavar="ORIGINAL", help="the scene before the edit")
    p.add_argument("edited", metavar="EDITED", help="the scene after the edit")
    p.add_argument("--mask", required=True, metavar="MASK.npy", help="the edit's mask of ORIGINAL")
    p.add_argument("--edited-mask", default=None, metavar="MASK.npy",
                   help="the mask of EDITED (edit --mask-out); needed when the Gaussian count changed")
    p.add_argument("--prompt", default="", help="the target prompt (for --clip)")
    p.add_argument("--source-prompt", default="", help="what the part was (for the CLIP direction)")
    p.add_argument("--target", default=None, metavar="SCENE", help="ground-truth edited scene: PSNR against it")
    p.add_argument("--clip", default=None, metavar="MODEL", help="CLIP model: hub id or local folder")
    p.add_argument("--mask-threshold", type=float, default=0.5, help="masked = weight above this (default 0.5)")
    p.add_argument("--views", type=int, default=8, help="evaluation views (default 8)")
    p.add_argument("--resolution", type=int, default=224, help="evaluation render size (default 224)")
    p.add_argument("--out", default=None, metavar="JSON", help="also write the metrics to this file")
    add_up_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from engine.evaluate import EvalOptions, edit_metrics
    from engine.edit import EditConfig, as_mask
    from engine.io import load

    from .common import UserError, check_up_option, resolve_up
    from .edit import read_mask

    options = EvalOptions(views=args.views, resolution=args.resolution, clip=args.clip)
    options.check()
    if args.clip and not args.prompt.strip():
        raise UserError("--clip needs --prompt (the text the edit aimed at)")
    if not 0.0 <= args.mask_threshold < 1.0:
        raise UserError(f"--mask-threshold must be in [0, 1), got {args.mask_threshold}")
    if args.out and not (Path(args.out).parent if str(Path(args.out).parent) else Path(".")).is_dir():
        raise UserError(f"{args.out}: folder does not exist")
    check_up_option(args.up)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    original, edited = load(args.original), load(args.edited).to(device)
    up = resolve_up(args.up, args.original, original)  # the orbit's up, as the edit command chooses it
    original = original.to(device)
    try:
        mask = as_mask(read_mask(args.mask), len(original))
    except ValueError as exc:
        raise UserError(f"{args.mask}: {exc}") from None
    if args.edited_mask:
        try:
            edited_mask = as_mask(read_mask(args.edited_mask), len(edited))
        except ValueError as exc:
            raise UserError(f"{args.edited_mask}: {exc}") from None
    elif len(edited) == len(original):
        edited_mask = mask
    else:
        raise UserError(f"EDITED has {len(edited)} Gaussians and ORIGINAL {len(original)}: pass --edited-mask "
                        "(the edit's --mask-out)")
    if not bool((mask > args.mask_threshold).any()):
        raise UserError(f"{args.mask}: no Gaussian has weight above {args.mask_threshold}")
    target = load(args.target).to(device) if args.target else None
    clip = None
    if args.clip:
        from engine.evaluate.clip import load_clip

        clip = load_clip(args.clip)
    config = EditConfig(mask_threshold=args.mask_threshold, up=tuple(up))
    metrics, _ = edit_metrics(original, mask, edited, torch.as_tensor(np.asarray(edited_mask)), config, options,
                              target=target, clip=clip, prompt=args.prompt, source_prompt=args.source_prompt)
    text = json.dumps(metrics)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0
