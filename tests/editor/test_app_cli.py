"""`python app.py --help` and option checks: fast, no heavy imports, clear errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_option_quickly():
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    elapsed = time.monotonic() - start
    assert out.returncode == 0
    for option in ("--host", "--port", "--viser-port", "--share", "--space", "--scene", "--model", "--workspace",
                   "--max-upload-mb", "--max-viewers"):
        assert option in out.stdout
    assert "127.0.0.1" in out.stdout
    assert elapsed < 20  # no torch/gradio import for --help (generous bound for a loaded CI machine)


def test_defaults_bind_localhost(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    config = app.config_from_args(app.build_parser().parse_args([]))
    assert config.host == "127.0.0.1" and config.port == 7860 and not config.share
    assert config.use_viser and not config.space


def test_space_mode_from_environment(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/splat-editor")
    config = app.config_from_args(app.build_parser().parse_args([]))
    assert config.space and not config.use_viser
    monkeypatch.delenv("SPACE_ID")
    assert not app.config_from_args(app.build_parser().parse_args(["--share"])).use_viser


@pytest.mark.parametrize("argv, message", [
    (["--max-upload-mb", "0"], "--max-upload-mb"),
    (["--scene", "/nonexistent/scene.ply"], "no such file"),
    (["--port", "-1"], "ports"),
])
def test_bad_options_exit_with_one_line(argv, message, capsys):
    assert app.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
