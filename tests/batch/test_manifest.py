"""The manifest: atomic rewrites, what a re-run skips, and a clear error for a file that is not a manifest."""

from __future__ import annotations

import json

import pytest

from engine.batch.jobs import Job
from engine.batch.manifest import Manifest, write_json_atomic


def _job(job_id="a", steps=3):
    return Job(job_id, "edit", {"scene": "/s.ply", "steps": steps})


def test_plan_skips_done_jobs_with_same_definition_and_outputs(tmp_path):
    out_file = tmp_path / "a" / "out.ply"
    out_file.parent.mkdir()
    out_file.write_text("x")
    manifest = Manifest(tmp_path)
    todo, skip = manifest.plan([_job("a"), _job("b")])
    assert [j.id for j in todo] == ["a", "b"] and skip == []
    assert manifest.counts() == {"pending": 2, "running": 0, "done": 0, "failed": 0}
    manifest.update("a", status="done", outputs={"scene": str(out_file)})
    manifest.update("b", status="failed", error="boom")
    again = Manifest.load(tmp_path)
    todo, skip = again.plan([_job("a"), _job("b")])
    assert [j.id for j in skip] == ["a"] and [j.id for j in todo] == ["b"]
    assert again.records["b"]["status"] == "pending" and again.records["b"]["error"] is None
    assert not again.is_finished(_job("a", steps=4))  # changed definition
    out_file.unlink()
    assert not again.is_finished(_job("a"))  # output gone


def test_unknown_status_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown job status"):
        Manifest(tmp_path).update("a", status="great")


def test_atomic_write_leaves_only_the_file(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": 1})
    write_json_atomic(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "m.json", {"a": float("nan")})  # not JSON: the old file stays
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_not_a_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a batch manifest"):
        Manifest.load(tmp_path)
