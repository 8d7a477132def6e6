"""`run_batch` without Ray: closed-form edits finish with outputs that load, a bad job is reported with its
error and does not stop the others, crashes are retried, and a second run skips what is finished."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.batch.execute import run_job
from engine.evaluate import EvalOptions
from engine.batch.run import run_batch
from engine.io import load
from tests.batch.batch_files import copy_of_run, edit_job, write_inputs, write_jobs
from tests.edit.scenes import two_part_scene

OPTIONS = EvalOptions(views=2, resolution=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    scene, part_ids, _ = two_part_scene(40)
    return write_inputs(tmp_path_factory.mktemp("batch_in"), scene, (part_ids == 0).numpy())


class Calls:
    """A job_fn that runs the real job, records which ran, and crashes on request."""

    def __init__(self, crash: dict[str, int] | None = None) -> None:
        self.ran: list[str] = []
        self.crash = dict(crash or {})  # job id -> how many attempts crash

    def __call__(self, job, out_dir, options):
        self.ran.append(job.id)
        if self.crash.get(job.id, 0) > 0:
            self.crash[job.id] -= 1
            raise RuntimeError(f"simulated crash of {job.id}")
        return run_job(job, out_dir, options)


@pytest.fixture(scope="module")
def first_run(inputs, tmp_path_factory):
    jobs = [edit_job("broken"), edit_job("sds-0"), edit_job("sds-1", seed=1), edit_job("dds-0", "dds"), edit_job("dds-1", "dds", 1),
            edit_job("bad-mask", mask="bad.npy"), edit_job("gt", target="target.ply", steps=6),
            edit_job("ref", model="reference:target.ply", steps=6),
            edit_job("flaky")]
    jobs_file = write_jobs(inputs / "jobs.jsonl", jobs)
    out = tmp_path_factory.mktemp("batch_out")
    calls = Calls(crash={"flaky": 1, "broken": 99})
    report = run_batch(jobs_file, out, options=OPTIONS, retries=2, quiet=True, job_fn=calls)
    return jobs_file, out, report, calls


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())["jobs"]


def test_good_jobs_done_with_outputs_that_load(first_run, inputs):
    _, out, report, _ = first_run
    records = _manifest(out)
    scene = load(inputs / "scene.ply")
    mask = np.load(inputs / "mask.npy") > 0.5
    for job_id in ("sds-0", "sds-1", "dds-0", "dds-1", "gt", "ref"):
        record = records[job_id]
        assert record["status"] == "done" and record["error"] is None and record["attempts"] == 1
        edited = load(record["outputs"]["scene"])
        edited_mask = np.load(record["outputs"]["mask"])
        assert record["outputs"]["scene"] == str(out / job_id / "out.ply")
        assert edited_mask.shape == (len(edited),)
        keep = torch.as_tensor(edited_mask <= 0.5)
        assert torch.equal(edited.means[keep], scene.means[torch.as_tensor(~mask)])
        metrics = record["metrics"]
        assert metrics["frozen_changed"] == 0 and metrics["masked_in"] == 40
        assert metrics["psnr_outside"] > metrics["psnr_inside"]
        assert record["seconds"] > 0
    assert not (out / ".staging" / "sds-0").exists()
    assert report.done == 7 and report.failed == 2 and report.ran == 9 and not report.ok


def test_seeds_give_different_edits(first_run):
    _, out, _, _ = first_run
    a, b = load(out / "sds-0" / "out.ply"), load(out / "sds-1" / "out.ply")
    assert not torch.equal(a.sh0, b.sh0)


def test_target_psnr_rises_with_the_edit(first_run, inputs):
    _, out, _, _ = first_run
    records = _manifest(out)
    for job_id in ("gt", "ref"):  # an explicit target, and the reference:SCENE prior's own ideal
        metrics = records[job_id]["metrics"]
        assert metrics["psnr_target"] > metrics["psnr_target_input"], job_id
    assert records["ref"]["job"]["model"] == f"reference:{inputs / 'target.ply'}"


def test_bad_job_reported_with_its_error_and_not_retried(first_run, inputs):
    _, out, _, calls = first_run
    record = _manifest(out)["bad-mask"]
    assert record["status"] == "failed" and record["outputs"] == {}
    assert record["error"] == (f"{inputs / 'bad.npy'}: the mask has 7 weights but the scene has 80 Gaussians; "
                               "make the mask for this scene")
    assert calls.ran.count("bad-mask") == 1 and record["attempts"] == 1
    assert not (out / "bad-mask").exists()


def test_crashes_retried_then_reported(first_run):
    _, out, _, calls = first_run
    records = _manifest(out)
    assert records["flaky"]["status"] == "done" and records["flaky"]["attempts"] == 2
    assert records["broken"]["status"] == "failed" and records["broken"]["attempts"] == 3
    assert records["broken"]["error"] == "RuntimeError: simulated crash of broken"
    assert calls.ran[:3] == ["broken"] * 3  # the first job failed for good; every later job still ran


def test_tables_have_one_row_per_method(first_run):
    _, out, _, _ = first_run
    lines = (out / "summary.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:5] == ["method", "jobs", "done", "failed", "seconds"] and "psnr_inside" in header
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert set(rows) == {"sds", "dds"}
    assert rows["sds"][1:4] == ["7", "5", "2"] and rows["dds"][1:4] == ["2", "2", "0"]
    assert (out / "summary.md").read_text().startswith("| method | jobs | done | failed |")
    results = (out / "results.csv").read_text().splitlines()
    assert len(results) == 10 and results[0].startswith("id,job,method,status,seconds,error")


def test_second_run_skips_finished_and_redoes_the_rest(first_run, tmp_path):
    jobs_file, first_out, _, _ = first_run
    out = copy_of_run(first_out, tmp_path / "again")  # the other tests read first_out as the first run left it
    before = _manifest(out)
    calls = Calls()
    report = run_batch(jobs_file, out, options=OPTIONS, retries=0, quiet=True, job_fn=calls)
    assert sorted(calls.ran) == ["bad-mask", "broken"]
    assert report.skipped == 7 and report.ran == 2
    after = _manifest(out)
    assert after["broken"]["status"] == "done"  # it no longer crashes
    assert after["bad-mask"]["status"] == "failed"
    assert after["sds-0"] == before["sds-0"]


def test_changed_interrupted_or_lost_jobs_run_again(inputs, tmp_path):
    jobs_file = write_jobs(inputs / "resume.jsonl", [edit_job("a"), edit_job("b"), edit_job("c")])
    out = tmp_path / "out"
    run_batch(jobs_file, out, options=OPTIONS, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["jobs"]["b"]["status"] = "running"  # as a killed batch leaves it
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "c" / "out.ply").unlink()  # an output lost since
    calls = Calls()
    run_batch(jobs_file, out, options=OPTIONS, quiet=True, job_fn=calls)
    assert sorted(calls.ran) == ["b", "c"]
    assert all(r["status"] == "done" for r in json.loads((out / "manifest.json").read_text())["jobs"].values())
    write_jobs(jobs_file, [edit_job("a", steps=4), edit_job("b"), edit_job("c")])
    calls = Calls()
    run_batch(jobs_file, out, options=OPTIONS, quiet=True, job_fn=calls)
    assert calls.ran == ["a"]  # its definition changed
