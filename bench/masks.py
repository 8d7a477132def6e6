"""Mask lifting accuracy and speed on views it was never tuned on: voting vs 3D-GALP, per part; prints JSON.

On the default scene (the toy robot, 7 ground-truth parts, the eyes and antenna included) for each seed:
draw --views views from the WHOLE sphere (below included) at random distances, aims, fields of view and
resolutions (--sizes; engine/masks/evaluation.py `sphere_views`), render each part's ground-truth masks,
corrupt --levels fractions of the views (eroded / dilated / shifted borders, bleeding into a neighbouring
part, part missing, flipped, a wrong part's mask: `corrupt_views`), lift every part (parts are independent
channels) with voting, 3D-GALP and the ablated 3D-GALPs, and cut every method at 0.5.

Per level, method and part, the IoU averaged over seeds:
- "visible": over the Gaussians that contribute to some view (summed compositing weight > 1e-3);
- "all": over all Gaussians (hidden ones included: voting gives them 0, GALP fills them from neighbours);
- "oracle_gap": mean over parts of (best IoU over thresholds 0.05..0.95) - (IoU at 0.5) on visible
  Gaussians: near 0 means 0.5 is the right cut (the weights are calibrated).
Ablations (on the first --ablation-seeds seeds): galp with one piece changed (no_median, median_everywhere,
no_trust, no_relative_error, no_across_parts, no_fit, with_view_dependent, no_silhouette, no_fill, no_support,
no_appearance, no_fill_unseen), to compare with "galp_on_ablation_seeds" (the full GALP on the same seeds).
--before FILE adds "before": a galp.py of an earlier commit, cut at its own suggested threshold
(`git show e0fa0ad:engine/masks/galp.py > /tmp/galp_before.py`).

Seeds: the report uses seeds --seed0 .. --seed0 + --seeds - 1 (default 0..2); GalpConfig was tuned on seeds
100+ (`--seed0 100`), whose views and corruptions are different draws.
With --large N also the time to lift 24 views of --large-size px on an N-Gaussian scene (the robot densified
to N Gaussians, or --large-scene random: a cube of random semi-transparent Gaussians).

    python bench/masks.py [--views 24] [--sizes 128,192,256] [--seeds 3] [--levels 0,0.1,0.25,0.4] [--large 0]
On a busy machine set OMP_NUM_THREADS=1 (torch's thread pool otherwise fights the other processes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.masks.compositing import compositing_weights  # noqa: E402
from engine.masks.evaluation import corrupt_views, ground_truth_masks, iou, sphere_views  # noqa: E402
from engine.masks.galp import GalpConfig, galp  # noqa: E402
from engine.masks.lift_vote import VISIBILITY_EPS, vote  # noqa: E402
from engine.masks.views_io import MaskViews  # noqa: E402

ABLATIONS = {
    "no_median": dict(robust_vote=False),
    "median_everywhere": dict(median_from=0.0),
    "no_trust": dict(view_trust=False),
    "no_relative_error": dict(relative_error=False),
    "no_across_parts": dict(across_parts=0.0),
    "no_fit": dict(steps=0),
    "with_view_dependent": dict(view_dependent=True),
    "no_silhouette": dict(silhouette=False),
    "no_fill": dict(fill=False),
    "no_support": dict(support=False),
    "no_appearance": dict(appearance=False),
    "no_fill_unseen": dict(fill_unseen=False),
}
ORACLE_CUTS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def methods(args) -> dict:
    """name -> function(scene, views, view_weights) -> (weights [P, N], threshold)."""
    if not args.full_weights:  # the app's path: each lift computes its own weights, in the masks' neighbourhood
        def scoped(lift):
            return lambda s, v, w, **kw: lift(s, v, **kw)
    else:
        def scoped(lift):
            return lambda s, v, w, **kw: lift(s, v, view_weights=w, **kw)
    lift_vote, lift_galp = scoped(vote), scoped(galp)
    out = {
        "vote": lambda s, v, w: (lift_vote(s, v, w).weights, 0.5),
        "galp": lambda s, v, w: (lift_galp(s, v, w).weights, 0.5),
    }
    for name in args.ablations:
        cfg = GalpConfig(**ABLATIONS[name])
        out[name] = lambda s, v, w, cfg=cfg: (lift_galp(s, v, w, config=cfg).weights, 0.5)
    if args.before:
        spec = importlib.util.spec_from_file_location("engine.masks._galp_before", args.before)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)

        def before(s, v, w):
            result = module.galp(s, v, view_weights=w)
            return result.weights, float(result.threshold)

        out["before"] = before
    return out


def score(weights: torch.Tensor, ids: torch.Tensor, threshold: float, seen: torch.Tensor) -> dict:
    """Per part: IoU on visible and on all Gaussians at `threshold`, and the best visible IoU over cuts."""
    vis, all_, best = [], [], []
    for p in range(weights.shape[0]):
        truth = ids == p
        vis.append(iou(weights[p][seen] > threshold, truth[seen]))
        all_.append(iou(weights[p] > threshold, truth))
        best.append(max(iou(weights[p][seen] > t, truth[seen]) for t in ORACLE_CUTS))
    return {"visible": vis, "all": all_, "best": best}


def accuracy(scene, ids, names, args) -> dict:
    lifters = methods(args)
    P = len(names)
    # results[level][method] = list over seeds of score dicts
    results = {lv: {m: [] for m in [*lifters, "galp_on_ablation_seeds"]} for lv in args.levels}
    times = {m: [] for m in lifters}
    t_weights, visible = [], []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        groups = sphere_views(scene, args.views, sizes=tuple(args.sizes), seed=seed)
        t0 = time.perf_counter()
        vws = [compositing_weights(scene, cams) for cams in groups]
        t_weights.append(time.perf_counter() - t0)
        gts = [ground_truth_masks(vw, ids, P) for vw in vws]
        seen = sum(vw.totals().sum(0) for vw in vws) > VISIBILITY_EPS
        visible.append(float(seen.float().mean()))
        for li, level in enumerate(args.levels):
            masks, _ = corrupt_views(gts, level, seed=seed * 7919 + li)
            views = [MaskViews(cams, m) for cams, m in zip(groups, masks)]
            for name, lift in lifters.items():
                if name in ABLATIONS and seed >= args.seed0 + args.ablation_seeds:
                    continue
                t0 = time.perf_counter()
                weights, cut = lift(scene, views, vws)
                times[name].append(time.perf_counter() - t0)
                results[level][name].append(score(weights, ids, cut, seen))
                if name == "galp" and args.ablations and seed < args.seed0 + args.ablation_seeds:
                    results[level]["galp_on_ablation_seeds"].append(results[level][name][-1])
        print(f"seed {seed} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)

    table = {}
    for level in args.levels:
        row = {}
        for name, runs in results[level].items():
            if not runs:
                continue
            vis = np.mean([r["visible"] for r in runs], axis=0)
            all_ = np.mean([r["all"] for r in runs], axis=0)
            best = np.mean([r["best"] for r in runs], axis=0)
            row[name] = {
                "visible": dict(zip(names, np.round(vis, 3).tolist())),
                "all": dict(zip(names, np.round(all_, 3).tolist())),
                "min_visible": round(float(vis.min()), 3),
                "mean_visible": round(float(vis.mean()), 3),
                "mean_all": round(float(all_.mean()), 3),
                "oracle_gap": round(float((best - vis).mean()), 3),
            }
        if "galp" in row and "vote" in row:
            g, v = row["galp"]["visible"], row["vote"]["visible"]
            row["galp_minus_vote_visible"] = {n: round(g[n] - v[n], 3) for n in names}
        table[f"{round(level * 100)}%"] = row
    return {
        "gaussians": len(scene),
        "parts": {n: int((ids == p).sum()) for p, n in enumerate(names)},
        "views": args.views,
        "sizes": args.sizes,
        "seeds": list(range(args.seed0, args.seed0 + args.seeds)),
        "ablation_seeds": list(range(args.seed0, args.seed0 + min(args.seeds, args.ablation_seeds))),
        "visible_fraction": round(float(np.mean(visible)), 4),
        "iou": table,
        "time_s": {
            "compositing_weights_per_view_set": round(float(np.median(t_weights)), 3),
            **{m: round(float(np.median(t)), 3) for m, t in times.items()},
        },
    }


def random_colours(scene, seed: int = 0):
    """The scene with each Gaussian's base colour drawn uniformly at random: colour then says nothing about the
    parts, which is what GALP's appearance kernel costs where parts do not differ in colour."""
    from engine.scene import GaussianScene, rgb_to_sh0

    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(len(scene), 3, generator=g)
    return GaussianScene.create(means=scene.means.detach(), quats=scene.quats.detach(), scales=scene.scales.detach(),
                                opacities=scene.opacities.detach(), sh0=rgb_to_sh0(colours))


def densified_robot(num: int, seed: int = 0):
    """The default robot with each Gaussian split into about num / N smaller ones inside its ellipsoid."""
    from assets.default_scene import load_default_scene
    from engine.scene import GaussianScene

    scene, _, _ = load_default_scene()
    g = torch.Generator().manual_seed(seed)
    k = num / len(scene)
    pick = torch.arange(len(scene)).repeat(int(np.ceil(k)))[:num]
    scales = scene.scales.detach()[pick]
    rot = _rotation(scene.quats.detach()[pick])
    offset = (rot @ (torch.randn(len(pick), 3, 1, generator=g) * 0.5 * scales.exp()[..., None]))[..., 0]
    return GaussianScene.create(
        means=scene.means.detach()[pick] + offset,
        quats=scene.quats.detach()[pick],
        scales=scales - 0.5 * float(np.log(max(k, 1.0))),
        opacities=scene.opacities.detach()[pick],
        sh0=scene.sh0.detach()[pick],
    )


def _rotation(q: torch.Tensor) -> torch.Tensor:  # [N, 4] (w, x, y, z) -> [N, 3, 3]
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def large(num: int, args) -> dict:
    """Time to lift one part from 24 views of --large-size px on an N-Gaussian scene."""
    from engine.scene import random_scene

    if args.large_scene == "random":
        scene = random_scene(num, extent=1.0, scale_range=(0.002, 0.01), seed=0)
    else:
        scene = densified_robot(num)
    ids = (scene.means[:, 2] < float(scene.means[:, 2].median())).long() ^ 1  # part 0 = the lower half
    load_before = os.getloadavg()
    cams = sphere_views(scene, 24, sizes=(args.large_size,), seed=0)[0]
    timer = _Timer()
    with timer("compositing_weights"):
        vw = compositing_weights(scene, cams)
    masks = ground_truth_masks(vw, ids, 2)[..., :1]
    views = MaskViews(cams, masks)
    given = [vw] if args.full_weights else None  # scoped: each lift computes its own weights (timed with it)
    with timer("vote"):
        vote(scene, views, view_weights=given)
    with timer("galp"):
        galp(scene, views, view_weights=given)
    return {"scene": args.large_scene, "gaussians": num, "views": 24, "size": args.large_size, "nnz": vw.nnz,
            "wall_s": timer.wall, "cpu_s": timer.cpu,
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()]}


class _Timer:
    """Wall and CPU seconds per named block (on a shared machine the CPU time is the figure that transfers)."""

    def __init__(self):
        self.wall, self.cpu = {}, {}

    def __call__(self, name: str):
        timer = self

        class _Block:
            def __enter__(self):
                self.t, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                timer.wall[name] = round(time.perf_counter() - self.t, 2)
                timer.cpu[name] = round(time.process_time() - self.c, 2)

        return _Block()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--sizes", default="128,192,256", help="image sizes the views are drawn from")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed0", type=int, default=0, help="first seed (tune on 100+, report 0..)")
    parser.add_argument("--levels", default="0,0.1,0.25,0.4")
    parser.add_argument("--ablations", default=",".join(ABLATIONS), help="comma list, or 'none'")
    parser.add_argument("--ablation-seeds", type=int, default=1, help="run the ablations on the first N seeds")
    parser.add_argument("--before", default=None, metavar="FILE", help="an earlier galp.py to compare")
    parser.add_argument("--colours", choices=("scene", "random"), default="scene",
                        help="random: uniform random base colours (what the appearance kernel costs without cues)")
    parser.add_argument("--full-weights", action="store_true",
                        help="lift with the whole views' weights (computed once per seed) instead of each lift's "
                             "own weights in the masks' neighbourhood (engine/masks/lift_scope.py, the app's path)")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--large", type=int, default=0, help="also time lifting on a scene of N Gaussians")
    parser.add_argument("--large-scene", choices=("robot", "random"), default="robot")
    parser.add_argument("--large-size", type=int, default=256)
    args = parser.parse_args(argv)
    args.levels = [float(v) for v in args.levels.split(",")]
    args.sizes = [int(v) for v in args.sizes.split(",")]
    args.ablations = [] if args.ablations in ("", "none") else args.ablations.split(",")
    unknown = [a for a in args.ablations if a not in ABLATIONS]
    if unknown:
        parser.error(f"unknown ablation {unknown[0]!r}; choose from {', '.join(ABLATIONS)}")

    from assets.default_scene import load_default_scene

    report = {
        "scene": "assets/default_scene.ply",
        "lifting_device": "cpu (numba splatting + torch sparse matmuls)",
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }
    if not args.skip_accuracy:
        scene, ids, names = load_default_scene()
        if args.colours == "random":
            scene = random_colours(scene)
        report["colours"] = args.colours
        report.update(accuracy(scene, torch.as_tensor(ids).long(), names, args))
    if args.large:
        report["large"] = large(args.large, args)
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
