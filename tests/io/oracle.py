"""Test helper: run PlayCanvas splat-transform (from node_modules, installed by .ci/run) as an oracle.

Tests that use it skip with the reason when node or the package is missing (the committed files in
tests/io/data prove the same readers without it), and fail instead under SPLATEDIT_REQUIRE_ORACLES=1 (.ci/run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.required import ORACLES, skip_unless_required

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "node_modules" / ".bin" / "splat-transform"


def available() -> str | None:
    """None when splat-transform can run here, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not BIN.exists():
        return "splat-transform is not installed (npm install @playcanvas/splat-transform@3)"
    return None


def convert(src: Path, dst: Path, *args: str) -> None:
    """`splat-transform -w [args] src dst`, skipping the test when the tool is unavailable (failing it when
    SPLATEDIT_REQUIRE_ORACLES=1)."""
    reason = available()
    if reason:
        skip_unless_required(reason, ORACLES)
    result = subprocess.run([str(BIN), "-w", "-g", "cpu", *args, str(src), str(dst)], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
