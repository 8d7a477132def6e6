"""`python -m engine edit`: a closed-form edit writes the scene with only the masked part changed; bad input
exits 2 with one line before any work."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.__main__ import main
from engine.cli import edit as cli
from engine.edit import EDIT_KINDS, MAX_RESOLUTION, MAX_STEPS, METHODS, MIN_RESOLUTION, EditConfig
from engine.io import load, save
from tests.edit.scenes import two_part_scene

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--model", "closed-form:#d02020", "--steps", "3", "--resolution", "32", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edit_cli")
    scene, part_ids, _ = two_part_scene(40)
    save(scene, folder / "scene.ply")
    np.save(folder / "mask.npy", (part_ids == 0).numpy())  # boolean
    np.save(folder / "soft.npy", (part_ids == 0).numpy().astype(np.float32))
    return folder, load(folder / "scene.ply"), part_ids == 0


def _argv(folder, *extra, mask="mask.npy", out="out.ply"):
    return ["edit", str(folder / "scene.ply"), "--mask", str(folder / mask), "--prompt", "a red head", *QUICK,
            *extra, "--out", str(folder / out)]


@pytest.mark.parametrize("method, extra", [("sds", []), ("dds", ["--source-prompt", "a blue head"]),
                                           ("romap", ["--anchor-views", "2"])])
def test_edit_writes_scene_with_only_the_mask_changed(files, capsys, method, extra):
    folder, scene, masked = files
    out = f"out_{method}.ply"
    argv = _argv(folder, "--method", method, "--no-densify", "--mask-out", str(folder / f"{method}.npy"), *extra,
                 mask="soft.npy", out=out)
    assert main(argv) == 0
    edited = load(folder / out)
    assert len(edited) == len(scene)
    for name, value in scene.items():
        assert torch.equal(getattr(edited, name)[~masked], value[~masked]), name
    assert not torch.equal(edited.sh0[masked], scene.sh0[masked])
    assert np.array_equal(np.load(folder / f"{method}.npy") > 0.5, masked.numpy())
    assert capsys.readouterr().out == ""  # --quiet


def test_progress_bar_and_summary(files, capsys):
    folder, _, _ = files
    argv = [a for a in _argv(folder) if a != "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "3/3" in captured.err


@pytest.mark.parametrize(
    "change, message",
    [
        (["--prompt", ""], "prompt is empty"),
        (["--method", "dds"], "DDS needs a source prompt"),
        (["--steps", "0"], "steps must be"),
        (["--resolution", "8"], "resolution must be"),
        (["--mask", "zeros.npy"], "mask is empty"),
        (["--mask", "short.npy"], "short.npy: the mask has 79 weights but the scene has 80"),
        (["--mask", "missing.npy"], "missing.npy: mask file does not exist"),
        (["--mask", "text.npy"], "text.npy: not a .npy array"),
        (["--model", "closed-form:notacolour"], "colour"),
        (["--out", "out.txt"], "cannot write"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(files, capsys, change, message):
    folder, scene, masked = files
    np.save(folder / "zeros.npy", np.zeros(len(scene), dtype=np.float32))
    np.save(folder / "short.npy", np.ones(len(scene) - 1, dtype=np.float32))
    (folder / "text.npy").write_text("not an array")
    argv = ["edit", str(folder / "scene.ply"), "--mask", str(folder / "mask.npy"), "--prompt", "a red head",
            *QUICK, "--out", str(folder / "never.ply")]
    for flag, value in zip(change[::2], change[1::2]):
        if flag == "--mask" or flag == "--out":
            value = str(folder / value)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1, err
    assert not (folder / "never.ply").exists() and not (folder / "out.txt").exists()


def test_unknown_method_is_refused_by_the_parser(files, capsys):
    folder, _, _ = files
    with pytest.raises(SystemExit) as exc:
        main(_argv(folder, "--method", "magic"))
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_help_documents_every_option():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "engine", "edit", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for action in cli_parser()._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
    for word in ("SCENE", "MASK.npy", "closed-form:<colour>", "sds", "dds", "romap", "boolean"):
        assert word in result.stdout


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    return parser._subparsers._group_actions[0].choices["edit"]


def test_cli_defaults_match_the_engine():
    """The CLI spells its defaults out (fast --help); they must be the engine's."""
    config = EditConfig()
    for name, value in cli.DEFAULTS.items():
        assert getattr(config, name) == value, name
    assert cli.LR_DEFAULTS == config.lr.as_dict()
    assert cli.EDIT_KINDS == EDIT_KINDS
    assert (cli.METHODS, cli.MAX_STEPS, cli.MIN_RESOLUTION, cli.MAX_RESOLUTION) == (
        METHODS, MAX_STEPS, MIN_RESOLUTION, MAX_RESOLUTION)
    args = cli_parser().parse_args(["s.ply", "--mask", "m.npy", "--prompt", "p", "--out", "o.ply", "--method", "romap",
                                    "--steps", "7", "--no-densify", "--prior-removal", "off", "--lr-sh0", "0.5"])
    made = cli.config_from_args(args)
    assert (made.method, made.steps, made.densify.enabled, made.prior.enabled, made.lr.sh0) == (
        "romap", 7, False, False, 0.5)
    boxed = cli.config_from_args(cli_parser().parse_args(
        ["s.ply", "--mask", "m.npy", "--prompt", "p", "--out", "o.ply", "--edit", "shape", "--region-margin", "0.2",
         "--region-box", "0,0,0,1,1,1", "--region-box=-1,-1,-1,0,0,0.5"]))
    assert (boxed.edit, boxed.region_margin) == ("shape", 0.2)
    assert [(b.lo, b.hi) for b in boxed.region_boxes] == [((0, 0, 0), (1, 1, 1)), ((-1, -1, -1), (0, 0, 0.5))]


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d,e,f", "0,0,0,0,1,1", "0,0,0,1,1,nan"])
def test_bad_region_box_is_one_line_error(text):
    from engine.cli.common import UserError

    with pytest.raises(UserError, match="--region-box"):
        cli.parse_box(text)


def test_every_method_edits_through_the_cli_with_a_saved_sd3_pipeline(files, tiny_flow_dir, capsys, monkeypatch,
                                                                     one_torch_thread):
    """The tiny SD3-layout pipeline, loaded offline by the real loader from its folder: each method writes a scene
    whose unmasked Gaussians are bit-identical and whose masked part moved; the summary names what ran (RoMaP's
    flow t range, resolved from the model's config)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, scene, masked = files
    for method in METHODS:
        out = f"flow_{method}.ply"
        argv = ["edit", str(folder / "scene.ply"), "--mask", str(folder / "mask.npy"), "--prompt", "a red head",
                "--source-prompt", "a blue head", "--model", str(tiny_flow_dir), "--method", method, "--steps", "1",
                "--resolution", "16", "--no-densify", "--edit", "appearance", "--anchor-views", "1",
                "--out", str(folder / out)]
        assert main(argv) == 0, method
        edited = load(folder / out)
        for name, value in scene.items():
            assert torch.equal(getattr(edited, name)[~masked], value[~masked]), (method, name)
        assert not torch.equal(edited.sh0[masked], scene.sh0[masked]), method
        line = capsys.readouterr().out
        if method == "sds":
            assert "t 0.3-0.98, random" in line and "guidance 100" in line, line
