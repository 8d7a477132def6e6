"""Real-size captures: load, pick, brush, SAM-view renders, lifting and an edit step at 0.15M-3M Gaussians.

The scene is a real capture (playbot-lod2, 125k Gaussians, SH 2, -y up) tiled on a square grid in the ground
plane until it holds --sizes Gaussians (the last copy thinned at random), its SH raised to degree 3 with small
random higher coefficients, written once as a 3DGS .ply (cached in --cache). The part is the first copy's head
and hands (y < -0.62, 13,318 Gaussians), in the middle of the grid, so every view of it sees other copies too.

Each size runs in a fresh process (peak RSS is per size) and prints, as JSON:
- load_s: engine.io.load of the .ply, and raw_fromfile_s: np.fromfile of the same bytes;
- pick_s: pick_patch at the part's centre pixel of a 512x512 view (radius 8, the editor's pick);
- brush_s: a 20 px brush dab in the window the editor crops around it (editor/masking.py `_window`);
- sam_views_render_s: the 24 orbit views of 256x256 around the part that a SAM click renders;
- lift_vote_s / lift_galp_s: the part's ground-truth masks in those 24 views lifted by voting and by 3D-GALP
  (compositing weights included), and the IoUs of the lifted parts (> 0.5) with the true part;
- edit_step_s: seconds per step of an SDS edit of the part with the closed-form prior at 128x128, averaged
  over --edit-steps after 2 (the view pool's views built and refreshed on the way are in it: use >= 32);
  edit_first_step_s apart;
- peak RSS after each stage (ru_maxrss, MB) and the .ply's size;
- session (a separate process, the app's path): an engine worker opens the .ply in a session, masks the part,
  runs a few edit steps (closed-form prior) and closes the session; the current RSS (MB) with the worker idle
  before loading, with the scene loaded ("idle"), the peak during the edit (sampled), after the edit (the
  history holds the result and the part's old rows) and after the session closed, and each over the file size
  (edit_peak_over_file: the peak above the worker's own RSS; process_peak_over_file: the whole process's).

    python bench/scale.py [--sizes 0.15,1.2,3] [--stages load,pick,brush,render,lift,edit,session]  # millions
    [--delete]: remove each size's .ply after its run (a 3M SH-3 .ply is ~750 MB).
The .ply is built in its own process first (building holds several copies of the scene: not this size's RSS).
Run sizes >= 0.5M under `flock /work/notes/bigbench.lock`. Times are wall seconds (medians over --repeats for
pick/brush) and cpu_s CPU seconds; on a busy machine set OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CAPTURE = Path("/work/shared/data/playbot-lod2/meta.json")
UP = (0.0, -1.0, 0.0)  # the capture's up
PART_Y = -0.62  # head and hands: y below this
SPACING = 1.6  # grid step between copies (the capture is ~1.42 wide)
STAGES = ("load", "pick", "brush", "render", "lift", "edit", "session")


def build_scene(num: int, seed: int = 0):
    """(scene [num], part mask [num] bool): the capture tiled to `num` Gaussians, SH degree 3."""
    from engine.io import load
    from engine.scene import GaussianScene

    base = load(CAPTURE)
    n0 = len(base)
    copies = max(1, math.ceil(num / n0))
    side = math.ceil(math.sqrt(copies))
    grid = [(i - side // 2, j - side // 2) for i in range(side) for j in range(side)]
    grid.sort(key=lambda ij: (ij[0] ** 2 + ij[1] ** 2, ij))  # copy 0 in the middle
    g = torch.Generator().manual_seed(seed)
    parts, part = [], []
    for c in range(copies):
        rows = torch.arange(n0)
        if c == copies - 1 and copies * n0 > num:
            rows = torch.randperm(n0, generator=g)[: num - c * n0].sort().values
        tile = base.subset(rows)
        offset = torch.tensor([grid[c][0] * SPACING, 0.0, grid[c][1] * SPACING])
        parts.append(tile.replace(means=tile.means + offset))
        part.append((tile.means[:, 1] < PART_Y) & (c == 0))
    scene = GaussianScene.concat(parts).with_sh_degree(3)
    extra = torch.randn(len(scene), 7, 3, generator=g) * 0.02  # the degree-3 band, small and random
    scene = scene.replace(shN=torch.cat([scene.shN[:, :8], extra], dim=1).contiguous())
    return scene, torch.cat(part)


def scene_file(num: int, cache: Path) -> tuple[Path, Path]:
    """(.ply, part mask .npy), built once per size."""
    from engine.io import save

    cache.mkdir(parents=True, exist_ok=True)
    ply, npy = scene_file_paths(num, cache)
    if not ply.exists() or not npy.exists():
        scene, part = build_scene(num)
        save(scene, ply)
        np.save(npy, part.numpy())
    return ply, npy


def scene_file_paths(num: int, cache: Path) -> tuple[Path, Path]:
    return cache / f"playbot_tiled_{num}.ply", cache / f"playbot_tiled_{num}_part.npy"


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_mb() -> float:
    """This process's resident set now (MB; Linux /proc)."""
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


CPU_S: dict[str, float] = {}  # per stage: CPU seconds of this process (the figure a busy machine distorts least)


def timed(fn, repeats: int = 1, name: str = "") -> tuple[float, object]:
    """(median wall seconds, last result); the median CPU seconds go to CPU_S[name]."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if name:
        CPU_S[name] = round(float(np.median(cpu)), 3)
    return round(float(np.median(times)), 3), out


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = int((a | b).sum())
    return round(int((a & b).sum()) / union, 4) if union else 1.0


def part_camera(scene, part, size: int):
    """(camera, centre [3], distance): a size x size view framing the part from 2.5 part radii away."""
    from engine.camera import framing_radius, orbit_cameras

    means = scene.means[part]
    centre = means.mean(0)
    radius = float((means - centre).norm(dim=-1).quantile(0.95))
    distance = framing_radius(radius, 45.0) * 2.5
    cam = orbit_cameras(centre, distance, [30.0], 20.0, width=size, height=size, up=UP)
    return cam, centre, distance


def centre_pixel(camera, point) -> tuple[float, float]:
    viewmat, K = camera.viewmats[0].float(), camera.Ks[0].float()
    pc = viewmat[:3, :3] @ point.float() + viewmat[:3, 3]
    return float(K[0, 0] * pc[0] / pc[2] + K[0, 2]), float(K[1, 1] * pc[1] / pc[2] + K[1, 2])


def truth_masks(scene, part, cameras) -> torch.Tensor:
    """[C, H, W, 1] the part's rendered coverage > 0.5 of what each pixel shows."""
    from engine.render import render

    out = []
    for c in range(len(cameras)):
        with torch.no_grad():
            r = render(scene, cameras[c], colors=part.float()[:, None])
        out.append(((r.rgb[0] > 0.5 * r.alpha[0]) & (r.alpha[0] > 0.5)).float())
    return torch.stack(out)


def run_one(num: int, args) -> dict:
    """Every stage on one size, in this process."""
    from engine.io import load

    ply, npy = scene_file(num, Path(args.cache))  # built by main() in its own process
    if args.stages == ["session"]:
        return {"gaussians": num, "file_mb": round(ply.stat().st_size / 2**20, 1), "session": session(ply, npy, args)}
    report = {"gaussians": num, "file_mb": round(ply.stat().st_size / 2**20, 1), "stages_s": {}, "peak_rss_mb": {}}
    times, rss = report["stages_s"], report["peak_rss_mb"]
    stages = args.stages
    raw_s, _ = timed(lambda: np.fromfile(ply, dtype=np.uint8), name="raw_fromfile")
    load_s, scene = timed(lambda: load(ply), name="load")
    if "load" in stages:
        times.update(load=load_s, raw_fromfile=raw_s, load_over_raw=round(load_s / max(raw_s, 1e-9), 2))
    rss["after_load"] = peak_rss_mb()
    part = torch.from_numpy(np.load(npy))
    report["part_gaussians"] = int(part.sum())
    camera, centre, distance = part_camera(scene, part, 512)
    x, y = centre_pixel(camera, centre)

    if "pick" in stages:
        from engine.masks.pick import pick_patch

        pick_patch(scene, camera, x, y, radius=8)  # compile
        times["pick"], mask = timed(lambda: pick_patch(scene, camera, x, y, radius=8), args.repeats, "pick")
        report["pick_selected"] = int((mask > 0.5).sum())
        rss["after_pick"] = peak_rss_mb()
    if "brush" in stages:
        from engine.masks.pick import crop_camera
        from engine.masks.selection import brush

        r, margin = 20, 16  # editor/masking.py: the brush radius and WINDOW_MARGIN
        ax, ay = max(0, int(x - r) - margin), max(0, int(y - r) - margin)
        bx, by = min(512, int(x + r) + 1 + margin), min(512, int(y + r) + 1 + margin)
        window = crop_camera(camera, ax, ay, bx - ax, by - ay)
        times["brush"], mask = timed(lambda: brush(scene, window, [(x - ax, y - ay)], r), args.repeats, "brush")
        report["brush_selected"] = int((mask > 0.5).sum())
        rss["after_brush"] = peak_rss_mb()

    from engine.masks.multiview import MultiViewConfig, render_uint8, views_around

    orbit = views_around(centre, distance, MultiViewConfig(num_views=24, size=256, up=UP))
    if "render" in stages:
        render_uint8(scene, orbit[0:1], (1.0, 1.0, 1.0))  # compile (numba caches on disk after the first run)
        times["sam_views_render"], _ = timed(lambda: render_uint8(scene, orbit, (1.0, 1.0, 1.0)), name="sam_views_render")
        rss["after_render"] = peak_rss_mb()
    if "lift" in stages:
        from engine.masks.galp import galp
        from engine.masks.lift_vote import vote
        from engine.masks.views_io import MaskViews

        views = MaskViews(orbit, truth_masks(scene, part, orbit))
        vote(scene, MaskViews(orbit[0:1], views.masks[:1]))  # compile
        for name, lift in (("vote", vote), ("galp", galp)):
            times[f"lift_{name}"], result = timed(lambda lift=lift: lift(scene, views), name=f"lift_{name}")
            seen = result.visibility > 1e-3
            chosen = result.weights[0] > 0.5
            report[f"lift_{name}_iou"] = {"all": iou(chosen, part), "seen": iou(chosen & seen, part & seen)}
            rss[f"after_lift_{name}"] = peak_rss_mb()
    if "edit" in stages:
        times["edit_step"] = edit_step(scene, part, args.edit_steps)
        rss["after_edit"] = peak_rss_mb()
    report["rss_now_mb"] = rss_mb()
    report["cpu_s"] = dict(CPU_S)
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


def edit_step(scene, part, steps: int, warmup: int = 2) -> float:
    """Steady-state seconds per SDS step (closed-form prior, 128x128, one view per step)."""
    from engine.edit import EditConfig, run_edit
    from engine.guidance import load_guidance

    model = load_guidance("closed-form:#d02020", device="cpu")
    config = EditConfig(prompt="a red part", method="sds", steps=warmup + steps, resolution=128, batch_size=1,
                        preview_every=0)
    marks: dict[int, tuple[float, float]] = {0: (time.perf_counter(), time.process_time())}
    run_edit(scene, part.float(), config, model,
             on_event=lambda e: marks.__setitem__(e.step, (time.perf_counter(), time.process_time())))
    CPU_S["edit_first_step"] = round(marks[1][1] - marks[0][1], 3)  # the pass's set-up (view pool) included
    CPU_S["edit_step"] = round((marks[warmup + steps][1] - marks[warmup][1]) / steps, 3)
    return round((marks[warmup + steps][0] - marks[warmup][0]) / steps, 3)


def session(ply: Path, npy: Path, args) -> dict:
    """RSS (MB) of the app's path through an engine worker session: idle, an edit's peak, after closing."""
    import gc
    import threading

    from engine.edit import EditConfig
    from engine.guidance import load_guidance
    from engine.worker import EngineWorker

    worker = EngineWorker(workspace=None, device="cpu", model_loader=lambda spec, device=None: load_guidance(
        spec, device="cpu"))
    worker.warm_up().result()  # what the app does at start: the kernels' code is resident before any session
    gc.collect()
    out = {"worker_mb": rss_mb()}
    t0, c0 = time.perf_counter(), time.process_time()
    worker.load_scene("s", str(ply)).result()
    worker.set_mask("s", torch.from_numpy(np.load(npy)).float()).result()
    out.update(load_s=round(time.perf_counter() - t0, 2), load_cpu_s=round(time.process_time() - c0, 2))
    gc.collect()
    out["idle_mb"] = rss_mb()
    peak, done = [out["idle_mb"]], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    config = EditConfig(prompt="a red part", model="closed-form:#d02020", method="sds", steps=args.edit_steps + 2,
                        resolution=128, batch_size=1, preview_every=0)
    t0, c0 = time.perf_counter(), time.process_time()
    worker.start_edit("s", config).result()
    out.update(edit_s=round(time.perf_counter() - t0, 2), edit_cpu_s=round(time.process_time() - c0, 2))
    done.set()
    sampler.join()
    out["edit_peak_mb"] = max(peak)
    gc.collect()
    out["after_edit_mb"] = rss_mb()
    worker.close_session("s").result()
    gc.collect()
    out["after_close_mb"] = rss_mb()
    worker.shutdown()
    size = ply.stat().st_size / 2**20
    out.update(edit_peak_over_file=round((out["edit_peak_mb"] - out["worker_mb"]) / size, 2),
               process_peak_over_file=round(out["edit_peak_mb"] / size, 2),
               after_close_over_idle=round(out["after_close_mb"] / out["idle_mb"], 3),
               load_average_end=[round(v, 2) for v in os.getloadavg()])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.15", help="comma list of sizes in millions of Gaussians")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--repeats", type=int, default=3, help="pick / brush repeats (median)")
    parser.add_argument("--edit-steps", type=int, default=4, help="timed edit steps (after 2 untimed)")
    parser.add_argument("--cache", default="/tmp/splat_scale_bench", help="where the tiled .ply files live")
    parser.add_argument("--delete", action="store_true", help="remove each size's .ply after its run")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # internal: one size, in-process
    parser.add_argument("--build", type=int, default=0, help=argparse.SUPPRESS)  # internal: write one size
    args = parser.parse_args(argv)
    args.stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    if args.build:
        scene_file(args.build, Path(args.cache))
        return
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    results = []
    for size in (float(s) for s in args.sizes.split(",")):
        num = int(round(size * 1e6))
        subprocess.run([sys.executable, __file__, "--build", str(num), "--cache", args.cache], check=True)
        common = ["--repeats", str(args.repeats), "--edit-steps", str(args.edit_steps), "--cache", args.cache]
        runs = [[s for s in args.stages if s != "session"], ["session"] if "session" in args.stages else []]
        merged: dict = {}
        for stages in (r for r in runs if r):  # the session in a process of its own: its RSS is the app's
            cmd = [sys.executable, __file__, "--one", str(num), "--stages", ",".join(stages), *common]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            merged.update(json.loads(out.stdout.strip().splitlines()[-1]))
        results.append(merged)
        if args.delete:
            for path in scene_file_paths(num, Path(args.cache)):
                path.unlink(missing_ok=True)
        print(f"{num} done", file=sys.stderr, flush=True)
    print(json.dumps({"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                      "load_average": [round(v, 2) for v in os.getloadavg()], "sizes": results}, indent=1))


if __name__ == "__main__":
    main()
