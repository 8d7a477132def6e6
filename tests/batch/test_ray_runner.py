"""Jobs as Ray tasks on a real local cluster (2 CPUs): closed-form edits of the bundled scene (two methods x two
seeds) finish with outputs that load; a bad mask is reported with its error; a job that raises in its worker is
retried, then failed; a worker that dies is retried; the others never stop; a second run skips finished jobs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray): only the Ray runner is skipped; "
                                        "the in-process runner is tested in test_run_local.py")

from assets.default_scene import PART_IDS_PATH, SCENE_PATH, load_default_scene_info  # noqa: E402
from engine.__main__ import main  # noqa: E402
from engine.evaluate import EvalOptions  # noqa: E402
from engine.batch.ray_runner import RayOptions, connect  # noqa: E402
from engine.batch.run import run_batch  # noqa: E402
from engine.io import load  # noqa: E402
from tests.batch.batch_files import copy_of_run, edit_job, write_jobs  # noqa: E402
from tests.batch.dying import maybe_die  # noqa: E402

OPTIONS = EvalOptions(views=2, resolution=32)
GOOD = ("sds-0", "sds-1", "dds-0", "dds-1")


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        pytest.skip("another Ray session is already running in this process")
    connect(RayOptions(address="local", num_cpus=2))  # the runner's own local start
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def robot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray_in")
    (folder / "scene.ply").symlink_to(SCENE_PATH)
    names = load_default_scene_info()["names"]
    np.save(folder / "mask.npy", np.load(PART_IDS_PATH) == names.index("scarf"))
    np.save(folder / "bad.npy", np.ones(7, dtype=np.float32))
    return folder


@pytest.fixture(scope="module")
def first_run(cluster, robot, tmp_path_factory):
    jobs = [edit_job("sds-0"), edit_job("sds-1", seed=1), edit_job("dds-0", "dds"), edit_job("dds-1", "dds", 1),
            edit_job("bad-mask", mask="bad.npy"),
            edit_job("overflow", lr_sh0=1e38),  # raises inside run_edit (RuntimeError: float overflow)
            edit_job("dies-once"), edit_job("dies-always")]
    for job in jobs:
        job["no_densify"] = True
    jobs_file = write_jobs(robot / "jobs.jsonl", jobs)
    out = tmp_path_factory.mktemp("ray_out")
    report = run_batch(jobs_file, out, options=OPTIONS, retries=1, ray=RayOptions(address="local"), quiet=True,
                       job_fn=maybe_die)
    return jobs_file, out, report


def _records(out):
    return json.loads((out / "manifest.json").read_text())["jobs"]


def test_good_jobs_done_and_outputs_load(first_run, robot):
    _, out, report = first_run
    records = _records(out)
    scene = load(robot / "scene.ply")
    outside = torch.as_tensor(np.load(robot / "mask.npy") <= 0.5)
    for job_id in GOOD:
        record = records[job_id]
        assert record["status"] == "done", record
        edited = load(record["outputs"]["scene"])
        assert len(edited) == len(scene)
        assert torch.equal(edited.sh0[outside], scene.sh0[outside])
        assert not torch.equal(edited.sh0[~outside], scene.sh0[~outside])
        assert record["metrics"]["frozen_changed"] == 0
    assert report.done == 5 and report.failed == 3


def test_bad_mask_reported_with_its_error(first_run, robot):
    record = _records(first_run[1])["bad-mask"]
    assert record["status"] == "failed" and record["attempts"] == 1
    assert record["error"].endswith("the mask has 7 weights but the scene has 33839 Gaussians; make the mask for "
                                    "this scene")


def test_raising_job_retried_then_failed(first_run):
    record = _records(first_run[1])["overflow"]
    assert record["status"] == "failed" and record["attempts"] == 2
    assert record["error"].startswith("RuntimeError:") and "overflow" in record["error"]


def test_dead_worker_retried(first_run):
    records = _records(first_run[1])
    assert records["dies-once"]["status"] == "done" and records["dies-once"]["attempts"] == 2
    assert records["dies-always"]["status"] == "failed" and records["dies-always"]["attempts"] == 2
    assert "worker process died" in records["dies-always"]["error"]


def test_jobs_asking_for_more_than_the_cluster_has_are_refused(first_run, tmp_path):
    jobs_file, _, _ = first_run
    with pytest.raises(ValueError, match=r"asks for 1 GPU\(s\) but this machine's Ray cluster has 0"):
        run_batch(jobs_file, tmp_path / "out", options=OPTIONS, ray=RayOptions(gpus_per_job=1), quiet=True)


def test_second_run_from_the_cli_skips_finished_jobs(first_run, capsys, tmp_path):
    jobs_file, first_out, _ = first_run
    out = copy_of_run(first_out, tmp_path / "again")  # the other tests read first_out as the first run left it
    before = _records(out)
    code = main(["batch", str(jobs_file), "--out", str(out), "--ray", "local", "--retries", "0", "--eval-views",
                 "2", "--eval-resolution", "32"])
    assert code == 1  # bad-mask and overflow fail again
    assert "6 done, 2 failed, 5 skipped" in capsys.readouterr().out
    after = _records(out)
    for job_id in (*GOOD, "dies-once"):
        assert after[job_id] == before[job_id]  # skipped: records untouched
    # the rest ran again, with the plain job function: dies-always now finishes
    assert after["dies-always"]["status"] == "done" and after["dies-always"]["attempts"] == 1
    assert {k for k, v in after.items() if v["status"] == "failed"} == {"bad-mask", "overflow"}
