"""Mask lifting accuracy and speed: 3D IoU of voting vs 3D-GALP under SAM-like corruption; prints JSON.

On the default scene (the toy robot with ground-truth parts): render --views orbit views at --res, make each
part's 2D masks from the ground truth, corrupt --levels fractions of the views (eroded / dilated borders,
dropped, flipped, bleeding into a neighbouring part; engine/masks/evaluation.py), lift all parts at once with
voting and with 3D-GALP, and report the mean part IoU at each method's threshold, averaged over --seeds.

- "iou_all": over ALL Gaussians (hidden ones included: voting gives them 0, GALP fills them from their nearest
  seen neighbours);
- "iou_visible": over the Gaussians that at least one view sees (summed compositing weight > 1e-3);
- "time_s": compositing weights of the views (once per view set), voting, and 3D-GALP (CPU unless CUDA).
With --large N also the time to lift on a random N-Gaussian scene (the 1M-Gaussian goal is <= 15 s with CUDA).

    python bench/masks.py [--res 128] [--views 24] [--seeds 3] [--levels 0,0.1,0.25,0.4] [--large 0]
On a busy machine set OMP_NUM_THREADS=1 (torch's thread pool otherwise fights the other processes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.masks.contrib import compositing_weights  # noqa: E402
from engine.masks.evaluation import corrupt_masks, ground_truth_masks, orbit_views, part_ious  # noqa: E402
from engine.masks.galp import galp  # noqa: E402
from engine.masks.lift_vote import VISIBILITY_EPS, vote  # noqa: E402
from engine.masks.views_io import MaskViews  # noqa: E402


def accuracy(scene, ids, names, args) -> dict:
    cams = orbit_views(scene, args.views, width=args.res, height=args.res)
    t0 = time.perf_counter()
    vw = compositing_weights(scene, cams)
    t_weights = time.perf_counter() - t0
    gt = ground_truth_masks(vw, ids, len(names))
    seen = vw.totals().sum(0) > VISIBILITY_EPS
    table_all, table_seen, per_part, times = {}, {}, {}, {"vote": [], "galp": []}
    for level in args.levels:
        rows = {"vote": ([], []), "galp": ([], [])}
        parts = {"vote": [], "galp": []}
        for seed in range(args.seeds):
            views = MaskViews(cams, corrupt_masks(gt, level, seed=seed)[0])
            for name, method in (("vote", vote), ("galp", galp)):
                t0 = time.perf_counter()
                result = method(scene, views, view_weights=[vw])
                times[name].append(time.perf_counter() - t0)
                ious = part_ious(result.weights, ids, result.threshold)
                rows[name][0].append(np.mean(ious))
                rows[name][1].append(np.mean(part_ious(result.weights, ids, result.threshold, seen)))
                parts[name].append(ious)
        key = f"{round(level * 100)}%"
        table_all[key] = {m: round(float(np.mean(v[0])), 4) for m, v in rows.items()}
        table_seen[key] = {m: round(float(np.mean(v[1])), 4) for m, v in rows.items()}
        per_part[key] = {m: dict(zip(names, np.round(np.mean(v, axis=0), 3).tolist())) for m, v in parts.items()}
    return {
        "gaussians": len(scene),
        "parts": list(names),
        "views": args.views,
        "resolution": args.res,
        "seeds": args.seeds,
        "visible_fraction": round(float(seen.float().mean()), 4),
        "iou_all": table_all,
        "iou_visible": table_seen,
        "iou_per_part": per_part,
        "time_s": {
            "compositing_weights": round(t_weights, 3),
            "vote": round(float(np.median(times["vote"])), 3),
            "galp": round(float(np.median(times["galp"])), 3),
        },
    }


def large(num: int, args) -> dict:
    """Lifting time for a random scene of `num` Gaussians (one part: a sphere of it), --views at --res."""
    from engine.scene import random_scene

    scene = random_scene(num, extent=1.0, scale_range=(0.002, 0.01), seed=0)
    ids = ((scene.means.norm(dim=-1) < 0.5).long() ^ 1)  # part 0 = the inner ball
    cams = orbit_views(scene, args.views, width=args.res, height=args.res)
    t0 = time.perf_counter()
    vw = compositing_weights(scene, cams)
    t_weights = time.perf_counter() - t0
    masks = ground_truth_masks(vw, ids, 2)[..., :1]
    t0 = time.perf_counter()
    galp(scene, MaskViews(cams, masks), view_weights=[vw])
    return {"gaussians": num, "compositing_weights_s": round(t_weights, 3),
            "galp_s": round(time.perf_counter() - t0, 3), "nnz": vw.nnz}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--levels", default="0,0.1,0.25,0.4")
    parser.add_argument("--large", type=int, default=0, help="also time lifting on a random scene of N Gaussians")
    args = parser.parse_args(argv)
    args.levels = [float(v) for v in args.levels.split(",")]

    from assets.default_scene import load_default_scene

    scene, ids, names = load_default_scene()
    report = {
        "scene": "assets/default_scene.ply",
        "lifting_device": "cpu (numba splatting + torch sparse matmuls; CUDA is not used yet)",
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **accuracy(scene, torch.as_tensor(ids).long(), names, args),
    }
    if args.large:
        report["large"] = large(args.large, args)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
