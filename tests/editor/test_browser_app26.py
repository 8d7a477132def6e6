"""Issue 26, items 5, 7 and 8 in headless Chromium:

- 26.5: the default .spz export, read back by splat-transform (SuperSplat's loader), has the original's bounds;
- 26.7: Frame selection closes in on the selection, the large view renders at the browser's size, and after an
  edit the mask tint is off in the view;
- 26.8: Generate's Cancel is disabled while idle, the SAM tool says before a click that no checkpoint is
  installed, and the orbit sliders follow a newly opened scene's view; exports are named after the source.

Screenshots go to tests/artifacts/ (gitignored) as issue26-app26-*.png.
"""

from __future__ import annotations

import time

import pytest
import torch

from tests.editor.browser_env import (ARTIFACTS, chromium_or_skip, click_render, launched_chromium, new_page,
                                      selected_count, session_of, wait_until)

pytestmark = pytest.mark.browser

CHROMIUM_EXECUTABLE, sync_api = chromium_or_skip()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.editor.apphelpers import running_app

    with running_app(tmp_path_factory.mktemp("app26")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with launched_chromium(CHROMIUM_EXECUTABLE, sync_api) as browser:
        yield browser


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"issue26-app26-{name}.png"), full_page=True)


def lopsided_capture(path):
    """A small scene whose bounds a frame flip would change, saved where the upload box can take it."""
    from engine.io import save
    from tests.editor.apphelpers import small_scene

    scene = small_scene(300, seed=4)
    scene = scene.replace(means=scene.means * torch.tensor([0.5, 1.0, 0.25]) + torch.tensor([0.3, -0.8, 1.5]))
    save(scene, path)
    return scene


def test_26_5_and_8_default_spz_export_opens_upright_in_splat_transform(app, browser, tmp_path):
    from engine.io import load
    from tests.io import oracle

    capture = tmp_path / "biker.ply"
    scene = lopsided_capture(capture)
    page = new_page(browser, app)
    session = session_of(app, page)
    page.get_by_role("tab", name="Scene").click()
    page.locator("#scene-upload input[type=file]").set_input_files(str(capture))
    wait_until(lambda: len(session.scene) == 300, timeout=60)
    page.get_by_role("tab", name="History & export").click()
    page.locator("#export-format input").click()
    page.get_by_role("option", name="Niantic .spz (opens upright in SuperSplat, splat-transform)").click()
    page.locator("#export-run").click()
    exported = session.workspace / "exports" / "biker-edited.spz"  # named after the source
    wait_until(lambda: exported.exists() and page.locator("#export-file a").count() > 0, timeout=60)
    shot(page, "5-spz-export")
    oracle.convert(exported, tmp_path / "read-by-splat-transform.ply")
    lo, hi = scene.bounding_box()
    back_lo, back_hi = load(tmp_path / "read-by-splat-transform.ply").bounding_box()
    assert torch.allclose(back_lo, lo, atol=1e-3) and torch.allclose(back_hi, hi, atol=1e-3)
    page.context.close()


def test_26_8_idle_buttons_sam_note_and_sliders_of_a_new_scene(app, browser, tmp_path):
    page = new_page(browser, app)
    session = session_of(app, page)
    page.get_by_role("tab", name="Scene").click()
    page.get_by_text("Generate from text").click()
    assert page.locator("#generate-cancel").is_disabled() and page.locator("#generate-run").is_enabled()
    page.get_by_role("tab", name="Mask").click()
    page.locator("#mask-tool").get_by_text("no checkpoint installed").click()  # the SAM tool says so in its name
    note = page.locator("#mask-sam-note")
    wait_until(lambda: note.is_visible() and "--sam-checkpoint" in note.inner_text(), timeout=30)
    assert "sam_vit_b_01ec64.pth" in note.inner_text()
    shot(page, "8-sam-note")
    page.locator("#mask-tool").get_by_text("Brush").click()
    wait_until(lambda: not note.is_visible(), timeout=30)
    page.get_by_role("tab", name="Render").click()
    for _ in range(3):
        page.locator("#orbit-right").click()
        time.sleep(0.3)
    slider = page.locator("#orbit-azimuth input[type=number]")
    wait_until(lambda: float(slider.input_value()) == pytest.approx(120.0), timeout=30)
    lopsided_capture(tmp_path / "next.ply")
    page.get_by_role("tab", name="Scene").click()
    page.locator("#scene-upload input[type=file]").set_input_files(str(tmp_path / "next.ply"))
    wait_until(lambda: session.bundle.name == "next.ply", timeout=60)
    wait_until(lambda: float(slider.input_value()) == pytest.approx(30.0), timeout=30)  # the fresh view's angle
    page.context.close()


def test_26_7_frame_selection_large_view_and_tint_off_after_an_edit(app, browser):
    page = new_page(browser, app)
    session = session_of(app, page)
    page.get_by_role("tab", name="Model").click()
    page.locator("#model-demo").click()
    wait_until(lambda: "closed-form:#" in page.locator("#model-status").inner_text().splitlines()[0], timeout=60)
    page.get_by_role("tab", name="Mask").click()
    wait_until(lambda: session.stream_visible, timeout=30)
    time.sleep(1.0)
    click_render(page, 0.6, 0.5)
    wait_until(lambda: selected_count(page) > 0, timeout=60)
    whole = session.view
    page.locator("#orbit-frame-selection").click()
    wait_until(lambda: session.view.radius < whole.radius, timeout=30)
    page.locator("#orbit-large").click()
    large = page.locator("#large-view img")
    wait_until(lambda: large.count() > 0 and large.evaluate("i => i.complete && i.naturalWidth") or 0, timeout=120)
    width = large.evaluate("i => i.naturalWidth")
    assert width == 1400  # the browser window's width (new_page's viewport), not the 512-pixel stream
    shot(page, "7-large-view")
    page.locator("#large-view-close").click()
    wait_until(lambda: not page.locator("#large-view-box").is_visible(), timeout=30)
    assert page.locator("#stream-tint input[type=checkbox]").is_checked()
    page.get_by_role("tab", name="Edit").click()
    page.locator("#edit-prompt textarea").fill("make it red")
    box = page.locator("#edit-steps input[type=number]")
    box.fill("3")
    box.press("Enter")
    time.sleep(0.5)
    page.locator("#edit-run").click()
    wait_until(lambda: page.locator("#edit-progress").get_attribute("data-state") == "done", timeout=300)
    wait_until(lambda: not page.locator("#stream-tint input[type=checkbox]").is_checked(), timeout=30)
    assert not session.tint
    shot(page, "7-after-edit-tint-off")
    page.context.close()
