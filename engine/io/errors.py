"""The one error type every reader and writer raises for a bad file."""

from __future__ import annotations

import os


class FormatError(ValueError):
    """A scene file is unreadable or malformed; the message names the file and the problem.

    A ValueError so the CLI's `run_command` turns it into a one-line error with a non-zero exit.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)
