"""`python -m engine generate`: a closed-form run writes a loadable scene; bad input exits 2 before any work."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.__main__ import main
from engine.cli import generate as cli
from engine.generate import MAX_RESOLUTION, MAX_STEPS, METHODS, MIN_RESOLUTION, GenerateConfig
from engine.io import load, save
from engine.scene import random_scene

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--model", "closed-form:#d02020", "--steps", "4", "--resolution", "16", "--num-gaussians", "60", "--quiet"]


def test_closed_form_generation_writes_a_scene(tmp_path, capsys):
    out = tmp_path / "red.ply"
    assert main(["generate", "--prompt", "a red ball", *QUICK, "--out", str(out)]) == 0
    scene = load(out)
    assert len(scene) > 0 and all(torch.isfinite(t).all() for _, t in scene.items())
    assert capsys.readouterr().out == ""  # --quiet


def test_generation_from_an_init_file(tmp_path, capsys):
    save(random_scene(40, seed=2, extent=0.3), tmp_path / "start.ply")
    out = tmp_path / "out.splat"
    assert main(["generate", "--prompt", "red", *QUICK[:-1], "--init", str(tmp_path / "start.ply"),
                 "--method", "ism", "--out", str(out)]) == 0
    assert len(load(out)) > 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", ""], "prompt is empty"),
        (["--prompt", "x", "--steps", "0"], "steps must be"),
        (["--prompt", "x", "--steps", "1000000"], "steps must be"),
        (["--prompt", "x", "--resolution", "4"], "resolution must be"),
        (["--prompt", "x", "--init", "no-such-mesh.obj"], "does not exist"),
        (["--prompt", "x", "--model", "closed-form:notacolour"], "unknown colour"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never.ply"
    base = {"--model": "closed-form:red", "--steps": "3"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = ["generate", *[x for kv in base.items() for x in kv], "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_empty_init_mesh_and_bad_output_are_refused(tmp_path, capsys):
    empty = tmp_path / "empty.ply"
    empty.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                     "property float z\nend_header\n")
    assert main(["generate", "--prompt", "x", *QUICK, "--init", str(empty), "--out", str(tmp_path / "o.ply")]) == 2
    assert "empty.ply" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", *QUICK, "--out", str(tmp_path / "o.txt")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_unknown_method_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--prompt", "x", "--method", "vsd", "--out", "o.ply"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_help_documents_every_option():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "engine", "generate", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--prompt", "--model", "--steps", "--init", "--seed", "--resolution", "--method", "--out",
                 "closed-form:<colour>", "ism", "sds"):
        assert flag in result.stdout


def test_cli_defaults_match_the_engine():
    """The CLI spells its defaults out (fast --help); they must be the engine's."""
    config = GenerateConfig()
    for name, value in cli.DEFAULTS.items():
        assert getattr(config, name) == value, name
    assert (cli.METHODS, cli.MAX_STEPS, cli.MIN_RESOLUTION, cli.MAX_RESOLUTION) == (
        METHODS, MAX_STEPS, MIN_RESOLUTION, MAX_RESOLUTION)
    args = argparse.Namespace(prompt="p", model=None, method="ism", steps=7, resolution=64, resolution_start=None,
                              batch_size=2, guidance_scale=None, seed=3, t_min=0.1, t_max=0.9, t_max_end=None,
                              init="ellipsoid", num_gaussians=10, no_densify=True, schedule="dreamtime")
    made = cli.config_from_args(args)
    assert not made.densify.enabled and made.schedule == "dreamtime"
    assert (made.method, made.steps, made.batch_size, made.seed, made.init, made.num_gaussians) == (
        "ism", 7, 2, 3, "ellipsoid", 10)
