"""Shared plumbing of the headless commands: one-line errors and exit codes, scene outputs, step progress."""

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
