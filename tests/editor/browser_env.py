"""What the browser test modules share: Debian's Chromium driven by playwright (never a downloaded browser),
where screenshots go, and polling until the page (or the server) shows something."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.required import BROWSER, skip_unless_required

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def chromium_or_skip():
    """(the Chromium executable, playwright.sync_api); skips the calling test module when either is missing
    (fails it under SPLATEDIT_REQUIRE_BROWSER=1, which .ci/run sets: it installs both)."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        skip_unless_required(f"chromium is not installed ({CHROMIUM}); browser tests need it", BROWSER,
                             allow_module_level=True)
    try:
        from playwright import sync_api
    except ImportError:
        skip_unless_required("the playwright package is not installed", BROWSER, allow_module_level=True)
    return (CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")), sync_api


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1):
    """predicate()'s first true value, polled every `interval` s; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")
