"""Edit quality against ground truth: case x method -> PSNR inside/outside the part, spill, floaters; prints JSON.

The cases are assets/build_edit_cases.py's ground-truth edits of the bundled robot (recolour the scarf and the
body, reshape the antenna ball, add a hat, remove the antenna). Each is edited with the reference prior of its
target (the model spec `reference:TARGET`: the closed-form prior whose target for each sampled view is the
target's render from that camera), so the ideal result is known; plus the demo a new user tries first (the
robot's right half with `closed-form:#d02020`, whose ideal is that half recoloured); the metrics (engine/evaluate/ground_truth.py) are taken
on 12 held-out views at elevations and distances the edit never samples.

    python bench/edit_quality.py [--steps 500] [--res 128] [--case NAME ...] [--methods sds,dds,romap|all]
                                 [--eval-res 128[,512]] [--loop new|before] [--real] [--edit auto|appearance|shape]

`--real` adds the real-capture cases of bench/real_capture.py (the shared playbot: head, body and ground-patch
recolours and a head scaled up), measured on held-out views that include views from below and from the top, at
every `--eval-res` (e.g. 128,512): per-view PSNR mean/worst, spill, Gaussian count change, geometry kept, the
share of the part's visible Gaussians left less than half-way to the target colour.

`--methods` (or `--method`) takes any of engine/guidance/methods.py's edit methods, or `all`: a row per method and
case. A method the prior cannot serve (csd on the weight-free priors, which predict the same for every prompt)
gets a row saying why it was refused.

`--loop before` runs a saved copy of an older edit loop through the same cases, for before/after tables: the
loop before the edit region was `git show e0fa0ad:engine/edit.py > engine/_edit_before.py` (gitignored; it is
told the reference prior's cameras, which it never did itself). On a busy machine set OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.build_edit_cases import edit_cases  # noqa: E402
from engine.edit import EditConfig, plan_region  # noqa: E402
from engine.evaluate import edit_quality, held_out_cameras  # noqa: E402
from engine.guidance.methods import EDIT_METHODS  # noqa: E402
from engine.guidance.reference import ReferencePrior  # noqa: E402
from engine.render.images import rgb_renderer  # noqa: E402

from bench.real_capture import NAMES as REAL_NAMES  # noqa: E402
from bench.real_capture import eval_cameras, real_cases, real_metrics  # noqa: E402


def run_case(case, method: str, args, loop) -> dict:
    config = loop.EditConfig(prompt=case.prompt, source_prompt=case.source_prompt, method=method, steps=args.steps,
                             resolution=args.res, preview_every=0, seed=args.seed)
    up = getattr(case, "up", None)
    if up is not None:
        config.up = up
    if args.edit and hasattr(config, "edit"):
        config.edit = args.edit
    for item in args.set or ():  # e.g. --set colour_carry=false --set shape_residual=0.8
        key, value = item.split("=", 1)
        current = getattr(config, key)
        setattr(config, key, value.lower() in ("1", "true", "yes") if isinstance(current, bool) else type(current)(value))
    if hasattr(config, "region_boxes"):
        config.region_boxes = tuple(case.boxes)
    model = getattr(case, "model", None) or ReferencePrior(case.target, render_fn=rgb_renderer())
    if args.loop == "before" and isinstance(model, ReferencePrior):  # the old loop never told a view-aware prior its cameras: do it for it
        inner = loop._render_with_mask

        def told(scene, weights, cameras, cfg):
            model.set_views(cameras)
            return inner(scene, weights, cameras, cfg)

        loop._render_with_mask = told
    start = time.perf_counter()
    result = loop.run_edit(case.scene, case.mask, config, model)
    seconds = time.perf_counter() - start
    if args.loop == "before" and isinstance(model, ReferencePrior):
        loop._render_with_mask = inner
    selected = case.mask > 0.5
    # Region and held-out views as today's loop defines them, whichever loop ran (same floaters for both).
    region, orbit = plan_region(case.scene, case.mask, EditConfig(prompt="x", region_boxes=tuple(case.boxes),
                                                                  up=up or (0.0, 0.0, 1.0)))
    sizes = [int(r) for r in str(args.eval_res).split(",")]
    if up is not None:  # a real capture: the bench/real_capture.py metrics at every evaluation size
        extra = {f"at{r}": real_metrics(case, result, eval_cameras(orbit.center, orbit.radius * 1.3, r))
                 for r in sizes}
        return {"case": case.name, "kind": case.kind, "method": method, "edit": config.edit, "set": args.set,
                "shape_from_step": getattr(result, "shape_from_step", None),
                "push_ratio": getattr(result, "shape_push_ratio", None), **extra,
                "steps": args.steps, "seconds": round(seconds, 1), "steps_per_s": round(args.steps / seconds, 2)}
    cameras = held_out_cameras(orbit.center, orbit.radius * 1.3, resolution=sizes[0])
    quality = edit_quality(case.scene, selected, result.scene, result.mask > 0.5, case.target, case.changed,
                           region, cameras)
    return {"case": case.name, "kind": case.kind, "method": method, **quality.as_dict(),
            "steps": args.steps, "seconds": round(seconds, 1), "steps_per_s": round(args.steps / seconds, 2)}


def demo_case():
    """What a new user tries first: the robot's right half (its -y side; it faces +x) with the demo prior
    `closed-form:#d02020`. The ideal is that half recoloured red, nothing else changed."""
    from assets.build_edit_cases import EditCase
    from assets.default_scene import load_default_scene
    from engine.guidance import load_guidance
    from engine.guidance.reference import recolour_part

    scene, _, _ = load_default_scene()
    half = scene.means[:, 1] < 0
    model = load_guidance("closed-form:#d02020", device="cpu")
    case = EditCase("demo_right_half_red", "recolour", "a robot whose right half is red", "a robot", scene,
                    half.float(), recolour_part(scene, half, tuple(float(c) for c in model.target)), changed=half)
    case.model = model
    return case


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--eval-res", default="128")
    parser.add_argument("--case", action="append")
    parser.add_argument("--methods", "--method", dest="method", default="sds,dds,romap",
                        help=f"comma-separated, or all: {','.join(EDIT_METHODS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop", choices=("new", "before"), default="new")
    parser.add_argument("--real", action="store_true", help="add the playbot cases (bench/real_capture.py)")
    parser.add_argument("--edit", choices=("auto", "appearance", "shape"), default=None)
    parser.add_argument("--set", action="append", help="override an EditConfig field: NAME=VALUE")
    args = parser.parse_args(argv)
    methods = list(EDIT_METHODS) if args.method == "all" else args.method.split(",")
    if set(methods) - set(EDIT_METHODS):
        parser.error(f"unknown method(s) {sorted(set(methods) - set(EDIT_METHODS))}; choose from {EDIT_METHODS}")
    loop = importlib.import_module("engine._edit_before" if args.loop == "before" else "engine.edit")
    rows = []
    names = tuple(args.case) if args.case else None
    bundled = tuple(n for n in names if n != "demo_right_half_red" and n not in REAL_NAMES) if names else None
    cases = edit_cases(bundled) if bundled or names is None else []
    if names is None or "demo_right_half_red" in names:
        cases.append(demo_case())
    if args.real or (names and set(names) & set(REAL_NAMES)):
        cases += real_cases(names if names and set(names) & set(REAL_NAMES) else None)
    for case in cases:
        for method in methods:
            try:
                row = run_case(case, method, args, loop)
            except ValueError as exc:  # refused before any work, e.g. csd on a weight-free prior
                row = {"case": case.name, "kind": case.kind, "method": method, "refused": str(exc)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                  "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                                  "load_avg": [round(x, 2) for x in os.getloadavg()]},
                      "loop": args.loop, "resolution": args.res, "steps": args.steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
