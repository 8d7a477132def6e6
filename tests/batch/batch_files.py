"""Input files shared by the batch tests: a scene, its part mask, a wrong mask, and a JOBS file writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

QUICK = {"model": "closed-form:#d02020", "steps": 3, "resolution": 32}


def write_inputs(folder: Path, scene, mask) -> Path:
    """scene.ply, mask.npy (the part), bad.npy (wrong length), target.ply (the part painted the prior's colour)."""
    from engine.io import save
    from engine.scene import rgb_to_sh0

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    save(scene, folder / "scene.ply")
    np.save(folder / "mask.npy", np.asarray(mask, dtype=np.float32))
    np.save(folder / "bad.npy", np.ones(7, dtype=np.float32))
    target = scene.detach().clone()
    target.sh0[torch.as_tensor(np.asarray(mask) > 0.5)] = rgb_to_sh0(torch.tensor([208 / 255, 32 / 255, 32 / 255]))
    save(target, folder / "target.ply")
    return folder


def edit_job(job_id: str, method: str = "sds", seed: int = 0, **extra) -> dict:
    job = {"id": job_id, "job": "edit", "scene": "scene.ply", "mask": "mask.npy", "prompt": "a red part",
           "method": method, "seed": seed, **QUICK, **extra}
    if method == "dds":
        job.setdefault("source_prompt", "a blue part")
    if method == "romap":
        job.setdefault("anchor_views", 2)
    return job


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def copy_of_run(out: Path, dest: Path) -> Path:
    """A copy of a finished batch folder whose manifest points at the copy's own outputs: a test that runs a batch
    into it again leaves `out` (a module fixture other tests read) as the first run wrote it."""
    import shutil

    shutil.copytree(out, dest)
    manifest_path = dest / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for record in manifest["jobs"].values():
        record["outputs"] = {k: str(dest / Path(v).relative_to(out)) for k, v in (record.get("outputs") or {}).items()}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return dest
