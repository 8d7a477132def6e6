"""Per-method and per-job tables: grouping, means over done jobs, CSV and Markdown."""

from __future__ import annotations

from engine.batch.jobs import Job
from engine.batch.progress import job_line
from engine.batch.summary import result_rows, summary_rows, to_csv, to_markdown, write_tables

JOBS = [Job("a", "edit", {"method": "sds"}), Job("b", "edit", {}), Job("c", "edit", {"method": "dds"}),
        Job("d", "mask", {"method": "vote"}), Job("e", "edit", {"method": "dds"})]
RECORDS = {
    "a": {"status": "done", "seconds": 2.0, "metrics": {"psnr_inside": 20.0, "spill_vs_input": 0.0, "eval_views": 8}},
    "b": {"status": "done", "seconds": 4.0, "metrics": {"psnr_inside": 30.0, "spill_vs_input": 0.5}},
    "c": {"status": "failed", "seconds": 1.0, "error": "bad | mask", "metrics": {}},
    "d": {"status": "done", "seconds": 1.0, "metrics": {"selected": 12}},
    "e": {"status": "done", "seconds": 3.0, "metrics": {"psnr_inside": 10.0, "clip_direction": None}},
}


def test_summary_groups_by_method_and_averages_done_jobs():
    rows = summary_rows(JOBS, RECORDS)
    assert [r["method"] for r in rows] == ["sds", "dds", "mask:vote"]
    sds, dds, mask = rows
    assert (sds["jobs"], sds["done"], sds["failed"], sds["seconds"]) == (2, 2, 0, 3.0)
    assert sds["psnr_inside"] == 25.0 and sds["spill_vs_input"] == 0.25 and sds["selected"] is None
    assert (dds["jobs"], dds["done"], dds["failed"], dds["psnr_inside"]) == (2, 1, 1, 10.0)
    assert mask["selected"] == 12.0
    assert "eval_views" not in sds and "clip_direction" not in sds


def test_a_named_schedule_gets_its_own_row():
    jobs = [Job("a", "edit", {"method": "nfsd"}), Job("b", "edit", {"method": "nfsd", "schedule": "dreamtime"}),
            Job("c", "generate", {"method": "csd", "schedule": "linear"})]
    records = {j.id: {"status": "done", "seconds": 1.0, "metrics": {"psnr_inside": 20.0}} for j in jobs}
    assert [r["method"] for r in summary_rows(jobs, records)] == ["nfsd", "nfsd+dreamtime", "generate:csd+linear"]


def test_tables_render(tmp_path):
    rows = summary_rows(JOBS, RECORDS)
    csv_text = to_csv(rows)
    assert csv_text.splitlines()[0] == "method,jobs,done,failed,seconds,psnr_inside,spill_vs_input,selected"
    assert csv_text.splitlines()[1] == "sds,2,2,0,3.0,25.0,0.25,"
    md = to_markdown(rows).splitlines()
    assert md[0] == "| method | jobs | done | failed | seconds | psnr_inside | spill_vs_input | selected |"
    assert md[2] == "| sds | 2 | 2 | 0 | 3 | 25 | 0.25 |  |"
    per_job = result_rows(JOBS, RECORDS)
    assert per_job[2]["error"] == "bad | mask" and "bad \\| mask" in to_markdown(per_job)
    paths = write_tables(tmp_path, JOBS, RECORDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "summary.csv", "summary.md"]
    assert paths["summary_csv"].read_text() == csv_text


def test_job_lines():
    assert job_line(JOBS[0], RECORDS["a"]) == "done    a  2.0s  psnr_inside=20 spill_vs_input=0"
    assert job_line(JOBS[2], {**RECORDS["c"], "attempts": 2}) == "failed  c  1.0s (attempts 2)  error: bad | mask"
