"""`python -m engine batch` and `python -m engine evaluate`: exit codes, one-line errors, progress lines, CLIP
metrics through --clip, and evaluate giving the same numbers as the batch for the same edit."""

from __future__ import annotations

import json

import pytest
import torch

from engine.__main__ import main
from tests.batch.batch_files import edit_job, write_inputs, write_jobs
from tests.evaluate.tiny_clip import save_tiny_clip
from tests.edit.scenes import two_part_scene

EVAL = ["--eval-views", "2", "--eval-resolution", "32"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    scene, part_ids, _ = two_part_scene(40)
    folder = write_inputs(tmp_path_factory.mktemp("cli_in"), scene, (part_ids == 0).numpy())
    save_tiny_clip(folder / "tiny-clip")
    return folder


def test_batch_exit_codes_lines_and_clip_metrics(inputs, tmp_path, capsys):
    jobs = write_jobs(inputs / "cli.jsonl", [edit_job("dds", "dds"), edit_job("bad", mask="bad.npy")])
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), *EVAL, "--clip", str(inputs / "tiny-clip")]) == 1
    captured = capsys.readouterr()
    assert "done    dds" in captured.err and "failed  bad" in captured.err and "the mask has 7 weights" in captured.err
    assert "1 done, 1 failed, 0 skipped" in captured.out
    metrics = json.loads((out / "manifest.json").read_text())["jobs"]["dds"]["metrics"]
    assert -1 <= metrics["clip"] <= 1 and -1 <= metrics["clip_direction"] <= 1
    assert metrics["clip_model"] == str(inputs / "tiny-clip")
    # all good now: the finished job is skipped, exit 0
    write_jobs(jobs, [edit_job("dds", "dds")])
    assert main(["batch", str(jobs), "--out", str(out), *EVAL, "--clip", str(inputs / "tiny-clip"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_evaluate_gives_the_batch_numbers(inputs, tmp_path, capsys):
    jobs = write_jobs(inputs / "eval.jsonl", [edit_job("e", "dds", target="target.ply")])
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), *EVAL, "--quiet"]) == 0
    recorded = json.loads((out / "manifest.json").read_text())["jobs"]["e"]["metrics"]
    argv = ["evaluate", str(inputs / "scene.ply"), str(out / "e" / "out.ply"), "--mask", str(inputs / "mask.npy"),
            "--edited-mask", str(out / "e" / "mask.npy"), "--target", str(inputs / "target.ply"),
            "--views", "2", "--resolution", "32", "--out", str(tmp_path / "m.json")]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == recorded == json.loads((tmp_path / "m.json").read_text())


@pytest.mark.parametrize("argv, message", [
    (["--gpus-per-job", "1"], "need --ray"),
    (["--retries", "-1"], "--retries must be in [0, 100]"),
    (["--eval-views", "0"], "evaluation views must be"),
    (["--clip", "no/such-clip"], "cannot load the CLIP model no/such-clip"),
    (["--clip", "no/such-clip", "--ray", "local"], "cannot load the CLIP model no/such-clip"),  # before Ray starts
])
def test_batch_bad_options_exit_2_before_any_work(inputs, tmp_path, capsys, argv, message):
    jobs = write_jobs(inputs / "opts.jsonl", [edit_job("x")])
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (out / "x").exists()


def test_batch_bad_jobs_file_exit_2(inputs, tmp_path, capsys):
    jobs = write_jobs(inputs / "badjobs.jsonl", [{"id": "x", "job": "edit", "scene": "scene.ply"}])
    assert main(["batch", str(jobs), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "badjobs.jsonl:1: job 'x'" in err and "required" in err and err.count("\n") == 1


def test_evaluate_errors(inputs, capsys):
    scene, mask = str(inputs / "scene.ply"), str(inputs / "mask.npy")
    assert main(["evaluate", scene, scene, "--mask", str(inputs / "bad.npy")]) == 2
    assert "bad.npy: the mask has 7 weights" in capsys.readouterr().err
    assert main(["evaluate", scene, scene, "--mask", mask, "--clip", str(inputs / "tiny-clip")]) == 2
    assert "--clip needs --prompt" in capsys.readouterr().err
    grown = inputs / "grown.ply"
    from engine.io import load, save

    s = load(scene)
    save(type(s).concat([s, s.subset(torch.arange(3))]), grown)
    assert main(["evaluate", scene, str(grown), "--mask", mask]) == 2
    assert "pass --edited-mask" in capsys.readouterr().err


def test_evaluate_with_clip(inputs, capsys):
    scene, mask = str(inputs / "scene.ply"), str(inputs / "mask.npy")
    assert main(["evaluate", scene, str(inputs / "target.ply"), "--mask", mask, "--views", "2", "--resolution", "32",
                 "--clip", str(inputs / "tiny-clip"), "--prompt", "a red part", "--source-prompt", "a blue part"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["frozen_changed"] == 0 and metrics["psnr_inside"] < metrics["psnr_outside"]
    assert isinstance(metrics["clip"], float) and isinstance(metrics["clip_direction"], float)
