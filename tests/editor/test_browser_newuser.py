"""The app as a new user meets it, in headless Chromium (Debian's /usr/bin/chromium driven by playwright).

Each test is one thing a new user tripped over (issue 18): Run with the default model while offline (a whole
message at once, and another tab's edit still runs), the part dropdown keeping its choice with Delete removing
that part (undoable), a click selecting a patch and the count answering quickly, an upload error naming the
user's file, no console errors from the viewer or the empty loss plot. Screenshots go to tests/artifacts/
(gitignored) as newuser-*.png.
"""

from __future__ import annotations

import time

import pytest

from tests.editor.browser_env import (ARTIFACTS, chromium_or_skip, click_render, launched_chromium, new_page,
                                      selected_count, session_of, wait_until)

pytestmark = pytest.mark.browser

CHROMIUM_EXECUTABLE, sync_api = chromium_or_skip()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.editor.apphelpers import running_app

    # The default model (Stable Diffusion 1.5) is not on this machine and HF_HUB_OFFLINE=1 (tests/conftest.py).
    with running_app(tmp_path_factory.mktemp("newuser"), use_default_scene=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with launched_chromium(CHROMIUM_EXECUTABLE, sync_api) as browser:
        yield browser


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"newuser-{name}.png"), full_page=True)


def test_pick_selects_a_patch_and_the_count_answers_quickly(app, browser, time_limit):
    page = new_page(browser, app)
    session = session_of(app, page)
    page.get_by_role("tab", name="Mask").click()
    wait_until(lambda: session.stream_visible)
    time.sleep(1.0)  # the Render tab's first image has arrived
    before = page.locator("#stream-view img").first.get_attribute("src")
    t = time.monotonic()
    click_render(page)  # the default tool: Pick, radius 24 px
    wait_until(lambda: selected_count(page) > 0, timeout=30)
    latency = time.monotonic() - t
    n = selected_count(page)
    assert n >= 100, n  # a patch of the surface, not the handful of Gaussians under one pixel
    wait_until(lambda: page.locator("#stream-view img").first.get_attribute("src") != before)
    shot(page, "01-pick-patch")
    # A bigger radius picks a bigger patch at the same place.
    page.locator("#mask-op").get_by_text("subtract").click()
    wait_until(lambda: session.op == "subtract")
    click_render(page)
    wait_until(lambda: selected_count(page) == 0, timeout=30)
    page.locator("#mask-op").get_by_text("add").click()
    page.locator("#mask-radius input[type=number]").fill("60")
    page.locator("#mask-radius input[type=number]").press("Enter")
    wait_until(lambda: session.brush_radius == 60 and session.op == "add")
    shown = page.locator("#stream-view img").first.get_attribute("src")
    click_render(page)
    wait_until(lambda: selected_count(page) > n, timeout=30)
    # the tinted view replaces the image: a click while it is being swapped can be lost by the page
    wait_until(lambda: page.locator("#stream-view img").first.get_attribute("src") != shown, timeout=30)
    time.sleep(0.5)
    # A click into the empty background says so under the count, and the next change clears the warning.
    click_render(page, 0.02, 0.03)
    # The server records the warning at once; the page shows it at its next sync (polled up to 60 s: on a
    # loaded machine the page can lag far behind the server, see bench/ui.py).
    wait_until(lambda: "no Gaussian" in session.notice, timeout=30)
    wait_until(lambda: "hits no Gaussian" in page.locator("#mask-info").inner_text(), timeout=60)
    shot(page, "02-empty-click-warning")
    page.locator("#mask-clear").click()
    wait_until(lambda: selected_count(page) == 0 and "hits no" not in page.locator("#mask-info").inner_text())
    assert latency < time_limit(15), latency  # generous on a loaded 2-core CI machine; bench/ui.py --selection times it
    errors = [text for kind, text in page.console if kind == "error"]
    assert not errors, errors
    page.context.close()


def test_offline_default_model_is_refused_at_once_and_another_tab_still_edits(app, browser, time_limit):
    first, second = new_page(browser, app), new_page(browser, app)
    for page in (first, second):
        page.get_by_role("tab", name="Mask").click()
        click_render(page)
        wait_until(lambda page=page: selected_count(page) > 0, timeout=30)
    # The first tab keeps the default model (not downloaded, offline) and presses Run.
    first.get_by_role("tab", name="Edit").click()
    assert "stable-diffusion" in first.locator("#edit-model").inner_text()  # the Edit tab says which model
    first.locator("#edit-prompt textarea").fill("a red scarf")
    t = time.monotonic()
    first.locator("#edit-run").click()
    toast = first.locator(".toast-body").first
    toast.wait_for(state="visible", timeout=20_000)
    elapsed = time.monotonic() - t
    text = toast.inner_text()
    shot(first, "03-offline-model-refused")
    assert elapsed < time_limit(10), elapsed
    assert "hf download" in text and "closed-form" in text, text  # the whole message: what to do
    assert first.locator("#edit-progress").get_attribute("data-state") == "idle"  # nothing was queued
    # The second tab switches to the closed-form demo and its edit runs to the end.
    second.get_by_role("tab", name="Model").click()
    second.locator("#model-demo").click()
    # (the unavailable model's message names the demo too: wait for the status line itself to change)
    wait_until(lambda: "closed-form:#" in second.locator("#model-status").inner_text().splitlines()[0])
    second.get_by_role("tab", name="Edit").click()
    wait_until(lambda: "closed-form" in second.locator("#edit-model").inner_text())
    second.locator("#edit-prompt textarea").fill("make it red")
    second.locator("#edit-steps input[type=number]").fill("6")
    second.locator("#edit-steps input[type=number]").press("Enter")
    second.get_by_text("Advanced").click()
    second.locator("#edit-res input[type=number]").fill("48")
    second.locator("#edit-res input[type=number]").press("Enter")
    time.sleep(0.5)
    second.locator("#edit-run").click()
    wait_until(lambda: second.locator("#edit-progress").get_attribute("data-state") == "done", timeout=300)
    shot(second, "04-other-tab-edit-done")
    # RoMaP always removes the prior: the box is ticked and locked while it is chosen.
    second.locator("#edit-method input").click()
    second.get_by_role("option", name="RoMaP (regularized SDS)").click()
    prior = second.locator("#edit-prior input[type=checkbox]")
    wait_until(lambda: prior.is_checked() and prior.is_disabled())
    first.context.close()
    second.context.close()


def test_part_dropdown_keeps_its_choice_and_delete_removes_that_part_undoably(app, browser):
    page = new_page(browser, app)
    session = session_of(app, page)
    legs = int((session.parts["legs"] > 0.5).sum())
    page.get_by_role("tab", name="Mask").click()
    page.locator("#part-select input").click()
    page.get_by_role("option", name="legs").click()
    page.locator("#part-apply").click()
    wait_until(lambda: selected_count(page) == legs, timeout=30)
    time.sleep(1.5)  # several sync ticks: the dropdown must not jump back to the first part
    assert page.locator("#part-select input").input_value() == "legs"
    shot(page, "05-part-legs-selected")
    page.get_by_role("button", name="Delete part").click()
    wait_until(lambda: "legs" not in session.parts, timeout=30)
    assert "head" in session.parts
    page.get_by_role("tab", name="History & export").click()
    wait_until(lambda: "delete part legs" in page.locator("#history-list").inner_text())
    page.locator("#hist-undo").click()
    wait_until(lambda: "legs" in session.parts, timeout=30)
    assert int((session.parts["legs"] > 0.5).sum()) == legs
    page.get_by_role("tab", name="Mask").click()
    shot(page, "06-part-delete-undone")
    page.context.close()


def test_upload_error_names_the_file_and_the_box_empties(app, browser, tmp_path):
    page = new_page(browser, app)
    junk = tmp_path / "my-capture.ply"
    junk.write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    page.get_by_role("tab", name="Scene").click()
    page.locator("#scene-upload input[type=file]").set_input_files(str(junk))
    toast = page.locator(".toast-body").first
    toast.wait_for(state="visible", timeout=30_000)
    text = toast.inner_text()
    assert "my-capture.ply" in text and "/tmp/" not in text and "gradio" not in text.lower(), text
    wait_until(lambda: page.locator("#scene-upload").get_by_text("my-capture.ply").count() == 0, timeout=30)
    shot(page, "07-upload-error")
    page.context.close()
