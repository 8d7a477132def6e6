"""What the browser test modules share: Debian's Chromium driven by playwright (never a downloaded browser),
where screenshots go, and polling until the page (or the server) shows something."""

from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import contextmanager
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


@contextmanager
def launched_chromium(executable: str, sync_api):
    """A headless Chromium (closed on exit); screenshots' folder made."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, app):
    """A fresh tab (its own session), on the Render tab (the Viser tab's software WebGL would eat the CPU)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console = []  # (type, text) of every console message
    page.on("console", lambda m: page.console.append((m.type, m.text)))
    page.goto(app.url)
    page.get_by_role("tab", name="Render").click()
    page.wait_for_function("() => { const i = document.querySelector('#stream-view img'); return i && i.src; }")
    return page


def selected_count(page) -> int:
    """The Mask panel's selected count (-1 before it shows one)."""
    match = re.search(r"([\d,]+)\s+of", page.locator("#mask-info").inner_text())
    return int(match.group(1).replace(",", "")) if match else -1


def click_render(page, fx: float = 0.5, fy: float = 0.45) -> None:
    """Click the streamed Render view at a fraction of its size."""
    box = page.locator("#stream-view img").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def session_of(app, page):
    """The server-side Session of a page (the newest one created)."""
    return wait_until(lambda: next(iter(sorted(app.ctx.registry.sessions(), key=lambda s: -s.created_at)), None))
