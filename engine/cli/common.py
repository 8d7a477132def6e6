"""Shared plumbing of the headless commands: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import sys


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
