"""JOBS files: JSONL and YAML read into checked jobs; each job parses exactly like its CLI command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.batch.jobs import JobsFileError, command_parsers, job_namespace, output_options, read_jobs


def _write(path: Path, *jobs, raw: str = "") -> Path:
    path.write_text(raw + "".join(json.dumps(j) + "\n" for j in jobs))
    return path


EDIT = {"id": "a", "job": "edit", "scene": "scene.ply", "mask": "m.npy", "prompt": "a red head",
        "model": "closed-form:#d02020", "steps": 7, "resolution": 32, "no_densify": True}


def test_jsonl_paths_resolved_against_the_file_and_options_parsed_like_the_cli(tmp_path):
    (tmp_path / "sub").mkdir()
    jobs = read_jobs(_write(tmp_path / "sub" / "jobs.jsonl", EDIT, raw="# a comment\n\n"))
    assert len(jobs) == 1
    job = jobs[0]
    assert job.kind == "edit" and job.line == 3
    assert job.options["scene"] == str((tmp_path / "sub" / "scene.ply").resolve())
    assert job.options["model"] == "closed-form:#d02020"  # not a path: kept as written
    args = job_namespace(job, output_options(job, tmp_path))
    expected = command_parsers()["edit"].parse_args(
        [job.options["scene"], "--mask", job.options["mask"], "--prompt", "a red head", "--model",
         "closed-form:#d02020", "--steps", "7", "--resolution", "32", "--no-densify", "--out",
         str(tmp_path / "out.ply"), "--mask-out", str(tmp_path / "mask.npy"), "--quiet"])
    assert vars(args) == vars(expected)
    assert args.no_densify is True and args.steps == 7 and args.method == "sds"


def test_values_that_look_like_options_stay_values(tmp_path):
    job = read_jobs(_write(tmp_path / "jobs.jsonl", {**EDIT, "prompt": "--steps 9", "t_min": 0.0}))[0]
    args = job_namespace(job, output_options(job, tmp_path))
    assert args.prompt == "--steps 9" and args.steps == 7


def test_every_method_and_schedule_of_the_registry_is_a_valid_job(tmp_path):
    """Manifests take the score-distillation family by name: `method` and `schedule` parse like --method and
    --schedule, for edits and generations; a misspelt schedule is refused with the choices."""
    from engine.guidance.methods import EDIT_METHODS, GENERATE_METHODS, SCHEDULES

    lines = [{**EDIT, "id": f"e-{m}-{s}", "method": m, "schedule": s, "source_prompt": "a blue head"}
             for m in EDIT_METHODS for s in SCHEDULES]
    lines += [{"id": f"g-{m}", "job": "generate", "prompt": "a teapot", "method": m, "schedule": "dreamtime"}
              for m in GENERATE_METHODS]
    for job in read_jobs(_write(tmp_path / "jobs.jsonl", *lines)):
        args = job_namespace(job, output_options(job, tmp_path))
        assert (args.method, args.schedule) == (job.options["method"], job.options["schedule"])
    with pytest.raises(JobsFileError, match="dreamtime"):
        read_jobs(_write(tmp_path / "bad.jsonl", {**EDIT, "schedule": "cosine"}))

def test_model_folder_next_to_the_jobs_file_is_resolved(tmp_path):
    (tmp_path / "models" / "sd").mkdir(parents=True)
    job = read_jobs(_write(tmp_path / "jobs.jsonl", {**EDIT, "model": "models/sd"}))[0]
    assert job.options["model"] == str((tmp_path / "models" / "sd").resolve())


def test_reference_model_path_is_resolved(tmp_path):
    job = read_jobs(_write(tmp_path / "jobs.jsonl", {**EDIT, "model": "reference:gt/target.ply"}))[0]
    assert job.options["model"] == f"reference:{(tmp_path / 'gt' / 'target.ply').resolve()}"


def test_yaml_list(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("- id: g1\n  job: generate\n  prompt: a teapot\n  steps: 3\n  init: sphere\n"
                    "- id: m1\n  job: mask\n  scene: s.ply\n  views: views\n  method: vote\n")
    jobs = read_jobs(path)
    assert [(j.id, j.kind) for j in jobs] == [("g1", "generate"), ("m1", "mask")]
    assert jobs[0].options["init"] == "sphere"
    assert jobs[1].options["views"] == str((tmp_path / "views").resolve())


def test_target_is_kept_for_the_evaluation(tmp_path):
    job = read_jobs(_write(tmp_path / "j.jsonl", {**EDIT, "target": "gt.ply"}))[0]
    assert "target" not in job.options and job.evaluation["target"] == str((tmp_path / "gt.ply").resolve())


def test_fingerprint_follows_the_definition(tmp_path):
    a = read_jobs(_write(tmp_path / "a.jsonl", EDIT))[0]
    b = read_jobs(_write(tmp_path / "b.jsonl", {**EDIT, "steps": 8}))[0]
    c = read_jobs(_write(tmp_path / "c.jsonl", EDIT))[0]
    assert a.fingerprint() == c.fingerprint() != b.fingerprint()


@pytest.mark.parametrize("job, message", [
    ({**EDIT, "job": "paint"}, "\"job\" must be one of edit, generate, mask"),
    ({**EDIT, "id": "../x"}, "\"id\" must be a name"),
    ({k: v for k, v in EDIT.items() if k != "id"}, "\"id\" must be a name"),
    ({**EDIT, "prompts": "x"}, "unknown option 'prompts' for edit"),
    ({**EDIT, "out": "x.ply"}, "'out' is set by the batch"),
    ({**EDIT, "method": "magic"}, "invalid choice: 'magic'"),
    ({**EDIT, "steps": "many"}, "invalid int value: 'many'"),
    ({k: v for k, v in EDIT.items() if k != "prompt"}, "required: --prompt"),
    ({**EDIT, "steps": [1, 2]}, "must be a single value"),
    ({"id": "g", "job": "generate", "prompt": "x", "mask": "m.npy"}, "unknown option 'mask' for generate"),
])
def test_bad_jobs_are_refused_with_the_line_and_the_reason(tmp_path, job, message):
    path = _write(tmp_path / "jobs.jsonl", {**EDIT, "id": "first"}, job)
    with pytest.raises(JobsFileError) as info:
        read_jobs(path)
    assert message in str(info.value)
    assert f"{path}:2" in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(JobsFileError, match="does not exist"):
        read_jobs(tmp_path / "missing.jsonl")
    with pytest.raises(JobsFileError, match="no jobs"):
        read_jobs(_write(tmp_path / "empty.jsonl", raw="# nothing\n"))
    (tmp_path / "bad.jsonl").write_text(json.dumps(EDIT) + "\n{oops\n")
    with pytest.raises(JobsFileError, match=r"bad.jsonl:2: not a JSON object"):
        read_jobs(tmp_path / "bad.jsonl")
    with pytest.raises(JobsFileError, match="already used on line 1"):
        read_jobs(_write(tmp_path / "dup.jsonl", EDIT, EDIT))
    (tmp_path / "map.yaml").write_text("id: a\njob: edit\n")
    with pytest.raises(JobsFileError, match="a YAML jobs file is a list"):
        read_jobs(tmp_path / "map.yaml")
