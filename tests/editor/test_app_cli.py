"""`python app.py --help` and option checks: fast, no heavy imports, clear errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_option_quickly(time_limit):
    start = time.monotonic()
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    elapsed = time.monotonic() - start
    assert out.returncode == 0
    for option in ("--host", "--port", "--viser-port", "--share", "--space", "--scene", "--model", "--workspace",
                   "--max-upload-mb", "--max-viewers"):
        assert option in out.stdout
    assert "127.0.0.1" in out.stdout
    assert elapsed < time_limit(20)  # no torch/gradio import for --help (generous bound for a loaded CI machine)


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


def test_pip_installable_with_console_scripts_that_work_outside_the_repository(tmp_path):
    """The wheel `pip install .` would install: both console scripts, the bundled scene, and the CLI working
    from another folder (built from a copy of the sources, so the repository gets no build/ folder)."""
    import shutil
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "app.py"):
        shutil.copy(ROOT / name, src / name)
    for package in ("engine", "editor", "assets"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    entry_points = next(site.glob("*.dist-info/entry_points.txt")).read_text()
    assert "splat-edit = app:main" in entry_points and "splat-engine = engine.__main__:main" in entry_points
    assert (site / "assets" / "default_scene.ply").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    info = subprocess.run([sys.executable, "-c", "import sys; from engine.__main__ import main; "
                           "sys.exit(main(['info', sys.argv[1]]))", str(site / "assets" / "default_scene.ply")],
                          capture_output=True, text=True, timeout=120, cwd=elsewhere, env=env)
    assert info.returncode == 0, info.stderr[-2000:]
    assert __import__("json").loads(info.stdout)["count"] > 1000  # the bundled robot, read from the installed copy
