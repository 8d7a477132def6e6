"""Skips that CI can forbid. A test whose outside tool (splat-transform, Chromium) is missing skips on a
laptop, but where the environment variable says the tool must be there (.ci/run installs it and sets the
variable) the same skip is a failure: a broken install then fails the run instead of quietly testing less."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

ORACLES = "SPLATEDIT_REQUIRE_ORACLES"  # splat-transform via npm (tests/io/oracle.py)
BROWSER = "SPLATEDIT_REQUIRE_BROWSER"  # Chromium + playwright (tests/editor/browser_env.py)


def required(variable: str) -> bool:
    """The variable is set to 1: what it names must be present."""
    return os.environ.get(variable, "").strip() == "1"


def skip_unless_required(reason: str, variable: str, *, allow_module_level: bool = False) -> NoReturn:
    """Skip with `reason`, or fail with it when `variable`=1 (at module level a failure is a collection error,
    which fails the run too)."""
    if required(variable):
        pytest.fail(f"{reason}; {variable}=1 says it must be present", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)
