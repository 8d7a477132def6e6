"""Per-job overhead of the batch runners: N short closed-form edits in-process vs as Ray tasks; prints JSON.

The jobs: masked SDS edits of the bundled robot's scarf (closed-form prior, --steps 3 at 32 px, evaluated on 2
views at 32 px), so each job is short and what the runner adds shows. Three runs into fresh folders:

- in-process (the embedded default);
- Ray, a local cluster of 1 CPU (one job at a time: like for like with in-process, so the difference per job is
  Ray's overhead: task submission, a worker's first imports, result transfer);
- Ray, a local cluster of --cpus CPUs (jobs in parallel).

For each: `startup_s` (Ray cluster start), `wall_s` (the batch, from first submit to last result), `per_job_s`
(wall / jobs), `mean_job_s` (time inside the job function, as the manifest records it). The machine is shared:
the load average is reported too.

    python bench/batch.py [--jobs 20] [--cpus 2] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_jobs(folder: Path, count: int) -> Path:
    import numpy as np

    from assets.default_scene import PART_IDS_PATH, SCENE_PATH, load_default_scene_info

    names = load_default_scene_info()["names"]
    np.save(folder / "scarf.npy", np.load(PART_IDS_PATH) == names.index("scarf"))
    lines = [json.dumps({"id": f"j{i:03d}", "job": "edit", "scene": str(SCENE_PATH), "mask": "scarf.npy",
                         "prompt": "a red scarf", "model": "closed-form:#d02020", "steps": 3, "resolution": 32,
                         "seed": i, "no_densify": True}) for i in range(count)]
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def one_run(jobs_file: Path, out: Path, ray_cpus: int | None) -> dict:
    from engine.evaluate import EvalOptions
    from engine.batch.ray_runner import RayOptions, connect
    from engine.batch.run import run_batch

    options = EvalOptions(views=2, resolution=32)
    startup = 0.0
    ray_options = None
    if ray_cpus is not None:
        import ray

        t = time.perf_counter()
        ray_options = RayOptions(address="local", num_cpus=ray_cpus)
        connect(ray_options)
        startup = time.perf_counter() - t
    try:
        t = time.perf_counter()
        report = run_batch(jobs_file, out, options=options, retries=0, ray=ray_options, quiet=True)
        wall = time.perf_counter() - t
    finally:
        if ray_cpus is not None:
            ray.shutdown()
    records = json.loads((out / "manifest.json").read_text())["jobs"].values()
    seconds = [r["seconds"] for r in records if r["status"] == "done"]
    return {"runner": "in-process" if ray_cpus is None else f"ray local, {ray_cpus} CPU(s)",
            "jobs_done": report.done, "jobs_failed": report.failed, "startup_s": round(startup, 2),
            "wall_s": round(wall, 2), "per_job_s": round(wall / max(report.ran, 1), 3),
            "mean_job_s": round(sum(seconds) / max(len(seconds), 1), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the parallel Ray run")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs_file = write_jobs(tmp, args.jobs)
        configs = [None] if args.skip_ray else [None, 1, args.cpus]
        for i, cpus in enumerate(configs):
            runs.append(one_run(jobs_file, tmp / f"out{i}", cpus))
    result = {"bench": "batch", "jobs": args.jobs, "job": "edit sds, closed-form, 3 steps at 32 px, bundled robot "
              "(33,839 Gaussians), metrics on 2 views at 32 px", "runs": runs,
              "load_average": [round(v, 2) for v in os.getloadavg()], "cpu_count": os.cpu_count()}
    if not args.skip_ray:
        base, ray1 = runs[0], runs[1]
        result["ray_overhead_per_job_s"] = round(ray1["per_job_s"] - base["per_job_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
