"""Shared plumbing of the headless commands: one-line errors and exit codes, scene outputs, the --up option,
step progress."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class UserError(Exception):
    """A problem the user can fix (bad file, bad option); printed as one line, exit code 2."""


def run_command(args: argparse.Namespace) -> int:
    """Run `args.func(args)`; turn user-fixable errors into one line on stderr and a non-zero exit."""
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


def check_scene_output(path: str) -> None:
    """UserError unless `path` names a writable scene format in an existing folder (checked before any work)."""
    from pathlib import Path

    from engine.io import WRITABLE_EXTENSIONS

    p = Path(path)
    name = p.name.lower()
    if not name.endswith(WRITABLE_EXTENSIONS):
        raise UserError(f"{path}: cannot write this format (writable: {', '.join(WRITABLE_EXTENSIONS)})")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{path}: folder '{parent}' does not exist")
    if p.is_dir():
        raise UserError(f"{path}: is a directory")


UP_HELP = ("world up axis the orbit cameras circle around: auto (default: the file's own, else its format's "
           "convention, else a guess from geometry; see engine/io/detect_up.py), +z, -y, +y, -z, +x, -x or x,y,z "
           "(write a leading minus as --up=-y)")


def add_up_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--up", default="auto", help=UP_HELP)


def check_up_option(text: str):
    """The --up value as a unit vector, or None for auto; UserError for anything else (checked before work)."""
    from engine.up import parse_up

    if str(text).strip().lower() == "auto":
        return None
    try:
        return parse_up(text)
    except ValueError as exc:
        raise UserError(f"--up: {exc}") from None


def resolve_up(text: str, path, scene=None) -> tuple[float, float, float]:
    """The up axis to use for the scene file `path`: --up if given, else the one detected for the file."""
    from engine.io.detect_up import detect_up

    up = check_up_option(text)
    return up if up is not None else detect_up(path, scene).up


@contextmanager
def step_progress(
    total: int, desc: str, *, quiet: bool, fields: Callable[[Any], dict[str, Any]] | None = None,
) -> Iterator[Callable[[Any], None]]:
    """A tqdm bar on stderr for an optimization loop; yields the `on_event` callback that advances it.

    Events need `.step`, `.losses` and `.num_gaussians`; `fields(event)` adds more postfix values.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", disable=quiet, file=sys.stderr)

    def on_event(event) -> None:
        bar.update(event.step - bar.n)
        extra = fields(event) if fields is not None else {}
        bar.set_postfix(loss=f"{event.losses.get('loss', float('nan')):.4g}", gaussians=event.num_gaussians,
                        **extra, refresh=False)

    try:
        yield on_event
    finally:
        bar.close()
