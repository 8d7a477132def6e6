"""Headless command line: `python -m engine COMMAND ...` (see `python -m engine --help`).

Each command lives in its own module under engine/cli/ with `add_parser(subparsers)` (which registers the
command and sets `func`) and keeps its imports lazy so `--help` stays fast. Errors that a user can fix are
raised as `UserError` (or ValueError/OSError from the readers) and printed as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order shown in --help.
COMMAND_MODULES = ("info", "convert", "render", "turntable", "mask", "edit", "generate", "batch", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Part-level, text-prompted editing of 3D Gaussian Splatting scenes (headless commands).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"engine.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .cli.common import run_command

    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
