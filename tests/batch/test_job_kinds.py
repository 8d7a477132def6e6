"""Generate and mask jobs run through their CLI commands in a batch, with their outputs and metrics recorded."""

from __future__ import annotations

import json

import numpy as np
import torch

from engine.evaluate import EvalOptions
from engine.batch.run import run_batch
from engine.io import load, save
from engine.masks.compositing import compositing_weights
from engine.masks.evaluation import ground_truth_masks, orbit_views
from engine.masks.views_io import MaskViews, write_views
from tests.batch.batch_files import write_jobs
from tests.edit.scenes import two_part_scene


def test_generate_and_mask_jobs(tmp_path):
    torch.set_num_threads(1)
    scene, part_ids, _ = two_part_scene(40)
    save(scene, tmp_path / "scene.ply")
    cams = orbit_views(scene, 8, width=32, height=32)
    masks = ground_truth_masks(compositing_weights(scene, cams), part_ids, 2)[..., 0]
    write_views(tmp_path / "views", MaskViews(cams, masks))
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        {"id": "head", "job": "mask", "scene": "scene.ply", "views": "views", "method": "vote", "threshold": 0.5},
        {"id": "blob", "job": "generate", "prompt": "a red blob", "model": "closed-form:#d02020", "steps": 2,
         "num_gaussians": 50, "resolution": 32, "resolution_start": 32, "no_densify": True},
    ])
    report = run_batch(jobs, tmp_path / "out", options=EvalOptions(views=2, resolution=32), quiet=True)
    assert report.ok and report.done == 2
    records = json.loads((tmp_path / "out" / "manifest.json").read_text())["jobs"]
    weights = np.load(records["head"]["outputs"]["mask"])
    assert weights.shape == (80,)
    assert records["head"]["metrics"]["selected"] == int((weights > 0.5).sum()) > 0
    iou = ((weights > 0.5) & (part_ids == 0).numpy()).sum() / ((weights > 0.5) | (part_ids == 0).numpy()).sum()
    assert iou > 0.8
    assert len(load(records["blob"]["outputs"]["scene"])) == records["blob"]["metrics"]["gaussians_out"] == 50
    rows = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["mask:vote", "generate:sds"]
